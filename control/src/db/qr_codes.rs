//! Saved QR codes, always scoped by team.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::Db;

#[derive(Debug, Clone)]
pub struct QrRow {
    pub id: String,
    pub team_id: String,
    /// What kind of content (`link`, `url`, `text`, `email`, `phone`, `sms`, `wifi`).
    pub kind: String,
    pub link_id: Option<String>,
    pub title: String,
    /// Exactly what the code encodes.
    pub content: String,
    /// The drawing style, as JSON.
    pub style: String,
    pub format: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str =
    "id, team_id, kind, link_id, title, content, style, format, created_at, updated_at";

fn from_row(row: &AnyRow) -> sqlx::Result<QrRow> {
    Ok(QrRow {
        id: row.try_get("id")?,
        team_id: row.try_get("team_id")?,
        kind: row.try_get("kind")?,
        link_id: row.try_get("link_id")?,
        title: row.try_get("title")?,
        content: row.try_get("content")?,
        style: row.try_get("style")?,
        format: row.try_get("format")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub async fn insert(db: &Db, row: &QrRow) -> sqlx::Result<()> {
    let mut w = db.begin_write().await?;
    sqlx::query(&format!(
        "INSERT INTO qr_codes ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    ))
    .bind(&row.id)
    .bind(&row.team_id)
    .bind(&row.kind)
    .bind(&row.link_id)
    .bind(&row.title)
    .bind(&row.content)
    .bind(&row.style)
    .bind(&row.format)
    .bind(row.created_at)
    .bind(row.updated_at)
    .execute(&mut *w.tx)
    .await?;
    w.commit().await
}

pub async fn get(db: &Db, team_id: &str, id: &str) -> sqlx::Result<Option<QrRow>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM qr_codes WHERE team_id = $1 AND id = $2"
    ))
    .bind(team_id)
    .bind(id)
    .fetch_optional(&db.pool)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// A page of the team's codes, newest first, optionally of one link; and how many there are.
pub async fn list(
    db: &Db,
    team_id: &str,
    link_id: Option<&str>,
    limit: u32,
    offset: u64,
) -> sqlx::Result<(Vec<QrRow>, u64)> {
    let filter = if link_id.is_some() {
        "team_id = $1 AND link_id = $2"
    } else {
        "team_id = $1"
    };
    let count_sql = format!("SELECT CAST(COUNT(*) AS BIGINT) FROM qr_codes WHERE {filter}");
    let mut count = sqlx::query(&count_sql).bind(team_id);
    let page_sql = format!(
        "SELECT {COLUMNS} FROM qr_codes WHERE {filter} ORDER BY created_at DESC, id DESC \
         LIMIT {limit} OFFSET {offset}"
    );
    let mut page = sqlx::query(&page_sql).bind(team_id);
    if let Some(link) = link_id {
        count = count.bind(link);
        page = page.bind(link);
    }
    let total: i64 = count.fetch_one(&db.pool).await?.try_get(0)?;
    let rows = page.fetch_all(&db.pool).await?;
    let rows = rows.iter().map(from_row).collect::<sqlx::Result<_>>()?;
    Ok((rows, u64::try_from(total).unwrap_or(0)))
}

/// Stores a new title, style and format; false when the team has no such code.
pub async fn update(db: &Db, row: &QrRow) -> sqlx::Result<bool> {
    let mut w = db.begin_write().await?;
    let res = sqlx::query(
        "UPDATE qr_codes SET title = $1, style = $2, format = $3, updated_at = $4 \
         WHERE team_id = $5 AND id = $6",
    )
    .bind(&row.title)
    .bind(&row.style)
    .bind(&row.format)
    .bind(row.updated_at)
    .bind(&row.team_id)
    .bind(&row.id)
    .execute(&mut *w.tx)
    .await?;
    w.commit().await?;
    Ok(res.rows_affected() > 0)
}

/// False when the team has no such code.
pub async fn delete(db: &Db, team_id: &str, id: &str) -> sqlx::Result<bool> {
    let mut w = db.begin_write().await?;
    let res = sqlx::query("DELETE FROM qr_codes WHERE team_id = $1 AND id = $2")
        .bind(team_id)
        .bind(id)
        .execute(&mut *w.tx)
        .await?;
    w.commit().await?;
    Ok(res.rows_affected() > 0)
}

/// Human clicks that came through a QR code, per link, for the team's `link_ids`.
pub async fn scans(
    db: &Db,
    team_id: &str,
    link_ids: &[&str],
) -> sqlx::Result<std::collections::HashMap<String, i64>> {
    let mut out = std::collections::HashMap::new();
    if link_ids.is_empty() {
        return Ok(out);
    }
    let placeholders: Vec<String> = (0..link_ids.len()).map(|i| format!("${}", i + 2)).collect();
    let sql = format!(
        "SELECT link_id, CAST(SUM(clicks) AS BIGINT) FROM click_rollups \
         WHERE team_id = $1 AND dim = 'qr' AND link_id IN ({}) GROUP BY link_id",
        placeholders.join(", ")
    );
    let mut q = sqlx::query(&sql).bind(team_id);
    for id in link_ids {
        q = q.bind(*id);
    }
    for row in q.fetch_all(&db.pool).await? {
        out.insert(row.try_get(0)?, row.try_get(1)?);
    }
    Ok(out)
}

/// Deletes a link's codes with the link (in its transaction): a code left behind would send
/// scanners to whatever link takes the freed slug next, possibly another team's.
pub async fn delete_for_link(
    conn: &mut sqlx::AnyConnection,
    team_id: &str,
    link_id: &str,
) -> sqlx::Result<u64> {
    let res = sqlx::query("DELETE FROM qr_codes WHERE team_id = $1 AND link_id = $2")
        .bind(team_id)
        .bind(link_id)
        .execute(conn)
        .await?;
    Ok(res.rows_affected())
}

/// Deletes the codes of every link on a domain, before the domain's links are deleted.
pub async fn delete_for_domain(
    conn: &mut sqlx::AnyConnection,
    team_id: &str,
    domain_id: &str,
) -> sqlx::Result<u64> {
    let res = sqlx::query(
        "DELETE FROM qr_codes WHERE team_id = $1 AND link_id IN \
         (SELECT id FROM links WHERE team_id = $2 AND domain_id = $3)",
    )
    .bind(team_id)
    .bind(team_id)
    .bind(domain_id)
    .execute(conn)
    .await?;
    Ok(res.rows_affected())
}

/// Points a link's codes at its new short URL (its slug or domain changed), in the link's
/// transaction.
pub async fn retarget_link(
    conn: &mut sqlx::AnyConnection,
    team_id: &str,
    link_id: &str,
    content: &str,
    now_ms: i64,
) -> sqlx::Result<u64> {
    let res = sqlx::query(
        "UPDATE qr_codes SET content = $1, updated_at = $2 WHERE team_id = $3 AND link_id = $4",
    )
    .bind(content)
    .bind(now_ms)
    .bind(team_id)
    .bind(link_id)
    .execute(conn)
    .await?;
    Ok(res.rows_affected())
}
