//! Galleries (link-in-bio pages) and their items, always scoped by team.

use sling_shared::feed::ChangeOp;
use sling_shared::link::BioPage;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::Db;

#[derive(Debug, Clone)]
pub struct GalleryRow {
    pub id: String,
    pub team_id: String,
    pub domain_id: String,
    /// The domain's host and whether it is the default one (joined, not stored here).
    pub host: String,
    pub domain_is_default: bool,
    pub handle: String,
    pub title: String,
    pub bio: Option<String>,
    pub avatar_url: Option<String>,
    pub theme: String,
    pub custom_css: Option<String>,
    /// The page the proxies serve; `None` while unpublished.
    pub published_html: Option<String>,
    pub published_at: Option<i64>,
    /// Human views of the published page, counted by click ingest.
    pub views: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl GalleryRow {
    /// What the edge should hold for this gallery now: its published page, or nothing.
    pub fn edge_op(&self) -> ChangeOp {
        match &self.published_html {
            Some(html) => ChangeOp::UpsertBioPage {
                host: self.host.clone(),
                handle: self.handle.clone(),
                page: Box::new(BioPage {
                    id: self.id.clone(),
                    html: html.clone(),
                }),
            },
            None => self.delete_op(),
        }
    }

    pub fn delete_op(&self) -> ChangeOp {
        ChangeOp::DeleteBioPage {
            host: self.host.clone(),
            handle: self.handle.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemRow {
    pub id: String,
    pub gallery_id: String,
    pub team_id: String,
    /// `link`, `header`, `divider`, `embed` or `image`.
    pub kind: String,
    pub title: Option<String>,
    pub url: Option<String>,
    pub image_url: Option<String>,
    pub active: bool,
    pub position: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const GALLERY_COLUMNS: &str = "g.id, g.team_id, g.domain_id, d.host, d.is_default, g.handle, \
     g.title, g.bio, g.avatar_url, g.theme, g.custom_css, g.published_html, g.published_at, \
     g.views, g.created_at, g.updated_at";
const FROM: &str = "galleries g JOIN domains d ON d.id = g.domain_id";
const ITEM_COLUMNS: &str = "id, gallery_id, team_id, kind, title, url, image_url, active, \
     position, created_at, updated_at";

fn gallery_from_row(row: &AnyRow) -> sqlx::Result<GalleryRow> {
    Ok(GalleryRow {
        id: row.try_get("id")?,
        team_id: row.try_get("team_id")?,
        domain_id: row.try_get("domain_id")?,
        host: row.try_get("host")?,
        domain_is_default: row.try_get::<i64, _>("is_default")? != 0,
        handle: row.try_get("handle")?,
        title: row.try_get("title")?,
        bio: row.try_get("bio")?,
        avatar_url: row.try_get("avatar_url")?,
        theme: row.try_get("theme")?,
        custom_css: row.try_get("custom_css")?,
        published_html: row.try_get("published_html")?,
        published_at: row.try_get("published_at")?,
        views: row.try_get("views")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn item_from_row(row: &AnyRow) -> sqlx::Result<ItemRow> {
    Ok(ItemRow {
        id: row.try_get("id")?,
        gallery_id: row.try_get("gallery_id")?,
        team_id: row.try_get("team_id")?,
        kind: row.try_get("kind")?,
        title: row.try_get("title")?,
        url: row.try_get("url")?,
        image_url: row.try_get("image_url")?,
        active: row.try_get::<i64, _>("active")? != 0,
        position: row.try_get("position")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub async fn insert(conn: &mut AnyConnection, row: &GalleryRow) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO galleries (id, team_id, domain_id, handle, title, bio, avatar_url, theme, \
         custom_css, published_html, published_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&row.id)
    .bind(&row.team_id)
    .bind(&row.domain_id)
    .bind(&row.handle)
    .bind(&row.title)
    .bind(&row.bio)
    .bind(&row.avatar_url)
    .bind(&row.theme)
    .bind(&row.custom_css)
    .bind(&row.published_html)
    .bind(row.published_at)
    .bind(row.created_at)
    .bind(row.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes every field of `row` back; false when the team has no such gallery.
pub async fn update(conn: &mut AnyConnection, row: &GalleryRow) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE galleries SET domain_id = $1, handle = $2, title = $3, bio = $4, \
         avatar_url = $5, theme = $6, custom_css = $7, published_html = $8, published_at = $9, \
         updated_at = $10 WHERE id = $11 AND team_id = $12",
    )
    .bind(&row.domain_id)
    .bind(&row.handle)
    .bind(&row.title)
    .bind(&row.bio)
    .bind(&row.avatar_url)
    .bind(&row.theme)
    .bind(&row.custom_css)
    .bind(&row.published_html)
    .bind(row.published_at)
    .bind(row.updated_at)
    .bind(&row.id)
    .bind(&row.team_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Marks the draft changed (an item was added, edited, moved or removed).
pub async fn touch(
    conn: &mut AnyConnection,
    team_id: &str,
    id: &str,
    now_ms: i64,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE galleries SET updated_at = $1 WHERE id = $2 AND team_id = $3")
        .bind(now_ms)
        .bind(id)
        .bind(team_id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn get<'c, E>(exec: E, team_id: &str, id: &str) -> sqlx::Result<Option<GalleryRow>>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let row = sqlx::query(&format!(
        "SELECT {GALLERY_COLUMNS} FROM {FROM} WHERE g.team_id = $1 AND g.id = $2"
    ))
    .bind(team_id)
    .bind(id)
    .fetch_optional(exec)
    .await?;
    row.as_ref().map(gallery_from_row).transpose()
}

/// Is `handle` taken on the domain (by any team: handles are per domain, like slugs)?
pub async fn handle_taken(
    conn: &mut AnyConnection,
    domain_id: &str,
    handle: &str,
    except_id: &str,
) -> sqlx::Result<bool> {
    let row =
        sqlx::query("SELECT id FROM galleries WHERE domain_id = $1 AND handle = $2 AND id <> $3")
            .bind(domain_id)
            .bind(handle)
            .bind(except_id)
            .fetch_optional(conn)
            .await?;
    Ok(row.is_some())
}

/// A page of the team's galleries, oldest first, and how many there are.
pub async fn list(
    db: &Db,
    team_id: &str,
    limit: u64,
    offset: u64,
) -> sqlx::Result<(Vec<GalleryRow>, u64)> {
    let rows = sqlx::query(&format!(
        "SELECT {GALLERY_COLUMNS} FROM {FROM} WHERE g.team_id = $1 \
         ORDER BY g.created_at, g.id LIMIT $2 OFFSET $3"
    ))
    .bind(team_id)
    .bind(limit as i64)
    .bind(offset as i64)
    .fetch_all(&db.pool)
    .await?;
    let total = count(&db.pool, team_id).await?;
    Ok((
        rows.iter()
            .map(gallery_from_row)
            .collect::<sqlx::Result<_>>()?,
        total,
    ))
}

pub async fn count<'c, E>(exec: E, team_id: &str) -> sqlx::Result<u64>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let n: i64 = sqlx::query("SELECT COUNT(*) FROM galleries WHERE team_id = $1")
        .bind(team_id)
        .fetch_one(exec)
        .await?
        .try_get(0)?;
    Ok(n as u64)
}

/// Deletes a gallery with its items; the row as it was, if the team had it.
pub async fn delete(
    conn: &mut AnyConnection,
    team_id: &str,
    id: &str,
) -> sqlx::Result<Option<GalleryRow>> {
    let Some(row) = get(&mut *conn, team_id, id).await? else {
        return Ok(None);
    };
    sqlx::query("DELETE FROM gallery_items WHERE gallery_id = $1 AND team_id = $2")
        .bind(id)
        .bind(team_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM galleries WHERE id = $1 AND team_id = $2")
        .bind(id)
        .bind(team_id)
        .execute(&mut *conn)
        .await?;
    Ok(Some(row))
}

/// Deletes every gallery on a domain (the domain is being deleted; its `DeleteDomain` change
/// drops their pages at the edge).
pub async fn delete_on_domain(conn: &mut AnyConnection, domain_id: &str) -> sqlx::Result<()> {
    sqlx::query(
        "DELETE FROM gallery_items WHERE gallery_id IN \
         (SELECT id FROM galleries WHERE domain_id = $1)",
    )
    .bind(domain_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM galleries WHERE domain_id = $1")
        .bind(domain_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Every published page, for a full snapshot read: (host, handle, page).
pub async fn published(db: &Db) -> sqlx::Result<Vec<(String, String, BioPage)>> {
    let rows = sqlx::query(&format!(
        "SELECT {GALLERY_COLUMNS} FROM {FROM} WHERE g.published_html IS NOT NULL"
    ))
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            let g = gallery_from_row(r)?;
            Ok((
                g.host,
                g.handle,
                BioPage {
                    id: g.id,
                    html: g.published_html.unwrap_or_default(),
                },
            ))
        })
        .collect()
}

/// The gallery's items in display order.
pub async fn items<'c, E>(exec: E, team_id: &str, gallery_id: &str) -> sqlx::Result<Vec<ItemRow>>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let rows = sqlx::query(&format!(
        "SELECT {ITEM_COLUMNS} FROM gallery_items WHERE team_id = $1 AND gallery_id = $2 \
         ORDER BY position, created_at, id"
    ))
    .bind(team_id)
    .bind(gallery_id)
    .fetch_all(exec)
    .await?;
    rows.iter().map(item_from_row).collect()
}

/// How many items each of the team's galleries has (for lists; galleries without items are
/// absent).
pub async fn item_counts<'c, E>(
    exec: E,
    team_id: &str,
) -> sqlx::Result<std::collections::HashMap<String, u64>>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let rows = sqlx::query(
        "SELECT gallery_id, CAST(COUNT(*) AS BIGINT) AS n FROM gallery_items \
         WHERE team_id = $1 GROUP BY gallery_id",
    )
    .bind(team_id)
    .fetch_all(exec)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("gallery_id")?, r.try_get::<i64, _>("n")? as u64)))
        .collect()
}

pub async fn insert_item(conn: &mut AnyConnection, item: &ItemRow) -> sqlx::Result<()> {
    sqlx::query(&format!(
        "INSERT INTO gallery_items ({ITEM_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    ))
    .bind(&item.id)
    .bind(&item.gallery_id)
    .bind(&item.team_id)
    .bind(&item.kind)
    .bind(&item.title)
    .bind(&item.url)
    .bind(&item.image_url)
    .bind(i64::from(item.active))
    .bind(item.position)
    .bind(item.created_at)
    .bind(item.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn update_item(conn: &mut AnyConnection, item: &ItemRow) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE gallery_items SET kind = $1, title = $2, url = $3, image_url = $4, active = $5, \
         position = $6, updated_at = $7 WHERE id = $8 AND team_id = $9 AND gallery_id = $10",
    )
    .bind(&item.kind)
    .bind(&item.title)
    .bind(&item.url)
    .bind(&item.image_url)
    .bind(i64::from(item.active))
    .bind(item.position)
    .bind(item.updated_at)
    .bind(&item.id)
    .bind(&item.team_id)
    .bind(&item.gallery_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn delete_item(
    conn: &mut AnyConnection,
    team_id: &str,
    gallery_id: &str,
    id: &str,
) -> sqlx::Result<bool> {
    let done =
        sqlx::query("DELETE FROM gallery_items WHERE id = $1 AND team_id = $2 AND gallery_id = $3")
            .bind(id)
            .bind(team_id)
            .bind(gallery_id)
            .execute(conn)
            .await?;
    Ok(done.rows_affected() == 1)
}
