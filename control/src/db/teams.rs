//! Teams (the tenants every other row belongs to) and first-start bootstrap.

use anyhow::Context;
use sling_shared::feed::ChangeOp;
use sqlx::Row;

use super::domains::{self, DomainRow};
use super::{Backend, Db, changes, keys};

/// Serialises concurrent bootstraps of several replicas on Postgres.
const BOOTSTRAP_LOCK_KEY: i64 = 0x5_1197;
pub const ADMIN_TEAM: &str = "admin";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team {
    pub id: String,
    pub name: String,
    pub plan: String,
    pub created_at: i64,
}

fn from_row(row: &sqlx::any::AnyRow) -> sqlx::Result<Team> {
    Ok(Team {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        plan: row.try_get("plan")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Creates a team on the default plan (`free`) and returns it.
pub async fn create_team(db: &Db, name: &str) -> anyhow::Result<Team> {
    create_team_with_plan(db, name, crate::plans::DEFAULT_PLAN).await
}

/// Creates a team on `plan` (the caller checks that the catalogue has it) and returns it.
pub async fn create_team_with_plan(db: &Db, name: &str, plan: &str) -> anyhow::Result<Team> {
    let name = valid_name(name).map_err(anyhow::Error::msg)?;
    let mut w = db.begin_write().await?;
    let team = insert_team(&mut w.tx, name, plan, super::now_ms(), false).await?;
    w.commit().await?;
    Ok(team)
}

/// A trimmed team name of 1 to 100 characters, or why not.
pub fn valid_name(name: &str) -> Result<&str, &'static str> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err("team name must be 1 to 100 characters, without control characters");
    }
    Ok(name)
}

/// Every team, oldest first.
pub async fn list(db: &Db) -> sqlx::Result<Vec<Team>> {
    let rows = sqlx::query("SELECT id, name, plan, created_at FROM teams ORDER BY created_at, id")
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Moves a team to `plan`; false when there is no such team.
pub async fn set_plan(db: &Db, team_id: &str, plan: &str) -> sqlx::Result<bool> {
    let mut w = db.begin_write().await?;
    let res = sqlx::query("UPDATE teams SET plan = $1 WHERE id = $2")
        .bind(plan)
        .bind(team_id)
        .execute(&mut *w.tx)
        .await?;
    w.commit().await?;
    Ok(res.rows_affected() > 0)
}

/// Renames a team; false when there is no such team.
pub async fn rename(db: &Db, team_id: &str, name: &str) -> sqlx::Result<bool> {
    let mut w = db.begin_write().await?;
    let res = sqlx::query("UPDATE teams SET name = $1 WHERE id = $2")
        .bind(name)
        .bind(team_id)
        .execute(&mut *w.tx)
        .await?;
    w.commit().await?;
    Ok(res.rows_affected() > 0)
}

/// A team by id, else the one team with that name (an error when several share it).
pub async fn find(db: &Db, name_or_id: &str) -> anyhow::Result<Option<Team>> {
    if let Some(t) = find_by_id(db, name_or_id).await? {
        return Ok(Some(t));
    }
    find_by_name(db, name_or_id).await
}

async fn insert_team(
    conn: &mut sqlx::AnyConnection,
    name: &str,
    plan: &str,
    now_ms: i64,
    operator: bool,
) -> anyhow::Result<Team> {
    let team = Team {
        id: crate::ids::new_id("team"),
        name: name.to_owned(),
        plan: plan.to_owned(),
        created_at: now_ms,
    };
    sqlx::query(
        "INSERT INTO teams (id, name, plan, created_at, is_operator) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&team.id)
    .bind(&team.name)
    .bind(&team.plan)
    .bind(team.created_at)
    .bind(i64::from(operator))
    .execute(&mut *conn)
    .await
    .context("inserting team")?;
    Ok(team)
}

pub async fn find_by_id(db: &Db, id: &str) -> sqlx::Result<Option<Team>> {
    let row = sqlx::query("SELECT id, name, plan, created_at FROM teams WHERE id = $1")
        .bind(id)
        .fetch_optional(&db.pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// The team called `name`. Names are not unique (any team may rename itself through
/// `PATCH /account`), so a name two teams share is an error listing their ids rather than a
/// guess that could hand a key or a plan to the wrong tenant.
pub async fn find_by_name(db: &Db, name: &str) -> anyhow::Result<Option<Team>> {
    let rows = sqlx::query(
        "SELECT id, name, plan, created_at FROM teams WHERE name = $1 ORDER BY created_at, id LIMIT 10",
    )
    .bind(name)
    .fetch_all(&db.pool)
    .await?;
    let mut teams = rows
        .iter()
        .map(from_row)
        .collect::<sqlx::Result<Vec<_>>>()?;
    if teams.len() > 1 {
        let ids: Vec<&str> = teams.iter().map(|t| t.id.as_str()).collect();
        anyhow::bail!(
            "{} teams are named {name:?} ({}): give the team's id instead",
            ids.len(),
            ids.join(", ")
        );
    }
    Ok(teams.pop())
}

/// Whether `team_id` is the operator's team (`is_operator`, set by bootstrap on the team it
/// makes with the first `*` key). Only it may change what every tenant shares (the default
/// domain); any other team may hold `*` for its own resources.
pub async fn is_operator(conn: &mut sqlx::AnyConnection, team_id: &str) -> sqlx::Result<bool> {
    let found: Option<i64> = sqlx::query_scalar("SELECT is_operator FROM teams WHERE id = $1")
        .bind(team_id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(found == Some(1))
}

/// The id of the team with this id, else of the team with this name, else of a new team with
/// this name.
pub async fn find_or_create_team(db: &Db, name_or_id: &str) -> anyhow::Result<String> {
    if let Some(t) = find_by_id(db, name_or_id).await? {
        return Ok(t.id);
    }
    if let Some(t) = find_by_name(db, name_or_id).await? {
        return Ok(t.id);
    }
    Ok(create_team(db, name_or_id).await?.id)
}

/// Brings a database to a servable state; safe to call on every start.
///
/// 1. Ensures the default domain row exists (`is_default = 1`, no team, verified) under
///    `default_domain_host`, renaming it when the configured host changed, and appends the
///    feed changes that tell proxies.
/// 2. When no team exists at all, creates team `admin` on the `unlimited` plan with a key of
///    scope `*` and returns the key's secret (shown once); otherwise returns `None`.
pub async fn bootstrap(db: &Db, default_domain_host: &str) -> anyhow::Result<Option<String>> {
    let host = sling_shared::host::normalize_host(default_domain_host)
        .with_context(|| format!("default domain {default_domain_host:?}"))?;
    let now = super::now_ms();
    let mut w = db.begin_write().await?;
    if w.backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(BOOTSTRAP_LOCK_KEY)
            .execute(&mut *w.tx)
            .await?;
    }

    let mut ops: Vec<ChangeOp> = Vec::new();
    match domains::default_domain(&mut *w.tx).await? {
        None => {
            if let Some(other) = domains::by_host(&mut *w.tx, &host).await? {
                anyhow::bail!(
                    "cannot make {host} the default domain: it is already a custom domain ({})",
                    other.id
                );
            }
            let d = DomainRow {
                id: crate::ids::new_id("dom"),
                team_id: None,
                host: host.clone(),
                is_default: true,
                verified: true,
                root_redirect: None,
                not_found_redirect: None,
                status: "active".into(),
                verify_method: None,
                verify_token: None,
                failure_reason: None,
                verified_at: None,
                https_redirect: false,
                pages: Default::default(),
                created_at: now,
            };
            sqlx::query(
                "INSERT INTO domains (id, team_id, host, is_default, verified, created_at, updated_at) \
                 VALUES ($1, NULL, $2, 1, 1, $3, $4)",
            )
            .bind(&d.id)
            .bind(&d.host)
            .bind(now)
            .bind(now)
            .execute(&mut *w.tx)
            .await
            .context("creating the default domain")?;
            ops.push(d.upsert_op());
        }
        Some(mut d) if d.host != host => {
            if domains::by_host(&mut *w.tx, &host).await?.is_some() {
                anyhow::bail!(
                    "cannot move the default domain to {host}: it is already a custom domain"
                );
            }
            sqlx::query("UPDATE domains SET host = $1, updated_at = $2 WHERE id = $3")
                .bind(&host)
                .bind(now)
                .bind(&d.id)
                .execute(&mut *w.tx)
                .await
                .context("renaming the default domain")?;
            ops.push(ChangeOp::DeleteDomain {
                host: d.host.clone(),
            });
            d.host = host.clone();
            ops.push(d.upsert_op());
        }
        Some(_) => {}
    }

    let teams: i64 = sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM teams")
        .fetch_one(&mut *w.tx)
        .await?
        .try_get(0)?;
    let secret = if teams == 0 {
        let team = insert_team(
            &mut w.tx,
            ADMIN_TEAM,
            crate::plans::UNLIMITED_PLAN,
            now,
            true,
        )
        .await?;
        let (_, secret) =
            keys::insert_key(&mut w.tx, &team.id, "admin", &["*".to_owned()], None, now).await?;
        Some(secret)
    } else {
        None
    };

    if !ops.is_empty() {
        let seq = changes::append(&mut w, &ops, now).await?;
        w.commit().await?;
        tracing::info!(host = %host, feed_seq = seq, "default domain set");
    } else {
        w.commit().await?;
    }
    Ok(secret)
}
