//! Webhooks and their deliveries, always scoped by team (the delivery worker's own queries
//! excepted: it serves every team).

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::Db;

#[derive(Debug, Clone)]
pub struct WebhookRow {
    pub id: String,
    pub team_id: String,
    pub url: String,
    pub events: Vec<String>,
    /// Sealed (`crate::seal`).
    pub secret: String,
    pub description: String,
    pub active: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl WebhookRow {
    pub fn wants(&self, event_type: &str) -> bool {
        self.active && self.events.iter().any(|e| e == "*" || e == event_type)
    }
}

/// The event `POST /webhooks/{id}/test` sends, whatever the webhook subscribed to.
pub const TEST_EVENT: &str = "webhook.test";

const HOOK_COLUMNS: &str =
    "id, team_id, url, events, secret, description, active, created_at, updated_at";

fn hook_from_row(row: &AnyRow) -> sqlx::Result<WebhookRow> {
    let events: String = row.try_get("events")?;
    let active: i64 = row.try_get("active")?;
    Ok(WebhookRow {
        id: row.try_get("id")?,
        team_id: row.try_get("team_id")?,
        url: row.try_get("url")?,
        events: serde_json::from_str(&events).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        secret: row.try_get("secret")?,
        description: row.try_get("description")?,
        active: active != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn events_json(events: &[String]) -> sqlx::Result<String> {
    serde_json::to_string(events).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

pub async fn insert(db: &Db, row: &WebhookRow) -> sqlx::Result<()> {
    let mut w = db.begin_write().await?;
    sqlx::query(&format!(
        "INSERT INTO webhooks ({HOOK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    ))
    .bind(&row.id)
    .bind(&row.team_id)
    .bind(&row.url)
    .bind(events_json(&row.events)?)
    .bind(&row.secret)
    .bind(&row.description)
    .bind(i64::from(row.active))
    .bind(row.created_at)
    .bind(row.updated_at)
    .execute(&mut *w.tx)
    .await?;
    w.commit().await
}

pub async fn get<'c, E>(exec: E, team_id: &str, id: &str) -> sqlx::Result<Option<WebhookRow>>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let row = sqlx::query(&format!(
        "SELECT {HOOK_COLUMNS} FROM webhooks WHERE team_id = $1 AND id = $2"
    ))
    .bind(team_id)
    .bind(id)
    .fetch_optional(exec)
    .await?;
    row.as_ref().map(hook_from_row).transpose()
}

/// The team's webhooks, oldest first.
pub async fn list(db: &Db, team_id: &str) -> sqlx::Result<Vec<WebhookRow>> {
    let rows = sqlx::query(&format!(
        "SELECT {HOOK_COLUMNS} FROM webhooks WHERE team_id = $1 ORDER BY created_at, id"
    ))
    .bind(team_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(hook_from_row).collect()
}

pub async fn count(db: &Db, team_id: &str) -> sqlx::Result<i64> {
    sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM webhooks WHERE team_id = $1")
        .bind(team_id)
        .fetch_one(&db.pool)
        .await?
        .try_get(0)
}

/// Stores url, events, description, active and secret; false when the team has no such hook.
pub async fn update(db: &Db, row: &WebhookRow) -> sqlx::Result<bool> {
    let mut w = db.begin_write().await?;
    let res = sqlx::query(
        "UPDATE webhooks SET url = $1, events = $2, description = $3, active = $4, secret = $5, \
         updated_at = $6 WHERE team_id = $7 AND id = $8",
    )
    .bind(&row.url)
    .bind(events_json(&row.events)?)
    .bind(&row.description)
    .bind(i64::from(row.active))
    .bind(&row.secret)
    .bind(row.updated_at)
    .bind(&row.team_id)
    .bind(&row.id)
    .execute(&mut *w.tx)
    .await?;
    w.commit().await?;
    Ok(res.rows_affected() > 0)
}

/// Deletes the webhook and its deliveries; false when the team has no such hook.
pub async fn delete(db: &Db, team_id: &str, id: &str) -> sqlx::Result<bool> {
    let mut w = db.begin_write().await?;
    let res = sqlx::query("DELETE FROM webhooks WHERE team_id = $1 AND id = $2")
        .bind(team_id)
        .bind(id)
        .execute(&mut *w.tx)
        .await?;
    sqlx::query("DELETE FROM webhook_deliveries WHERE team_id = $1 AND webhook_id = $2")
        .bind(team_id)
        .bind(id)
        .execute(&mut *w.tx)
        .await?;
    w.commit().await?;
    Ok(res.rows_affected() > 0)
}

/// One event for [`enqueue`].
#[derive(Debug, Clone)]
pub struct Event<'a> {
    pub id: &'a str,
    pub event_type: &'a str,
    pub payload: &'a serde_json::Value,
}

/// The team's active webhooks that want `event_type` (none for most teams: callers build an
/// event's payload only when this is not empty).
pub async fn subscribers(
    conn: &mut AnyConnection,
    team_id: &str,
    event_type: &str,
) -> sqlx::Result<Vec<WebhookRow>> {
    let rows = sqlx::query(&format!(
        "SELECT {HOOK_COLUMNS} FROM webhooks WHERE team_id = $1 AND active = 1"
    ))
    .bind(team_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut hooks = rows
        .iter()
        .map(hook_from_row)
        .collect::<sqlx::Result<Vec<_>>>()?;
    hooks.retain(|h| h.wants(event_type));
    Ok(hooks)
}

/// Queues a delivery of each event to each of `hooks` ([`subscribers`] of its type), in the
/// caller's transaction: the events exist exactly when the change they describe commits.
/// Returns how many deliveries were queued.
pub async fn enqueue(
    conn: &mut AnyConnection,
    hooks: &[WebhookRow],
    events: &[Event<'_>],
    now_ms: i64,
) -> sqlx::Result<u64> {
    let mut queued = 0;
    for hook in hooks {
        for e in events {
            insert_delivery(&mut *conn, hook, e, now_ms).await?;
            queued += 1;
        }
    }
    Ok(queued)
}

/// Webhooks that may want click events (`click`, `qr.scanned` or `*`), of every team: one small
/// query per ingest group, whose rows [`click_deliveries`] matches to the group's events. Plain
/// SQL text that both the `Any` and the native Postgres connections run.
pub const CLICK_HOOKS_SQL: &str = "SELECT id, team_id, events FROM webhooks WHERE active = 1 \
     AND (events LIKE '%\"click\"%' OR events LIKE '%\"qr.scanned\"%' OR events LIKE '%\"*\"%')";

/// One delivery of a click event to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub id: String,
    pub webhook_id: String,
    pub team_id: String,
    pub event_id: String,
    pub event_type: &'static str,
    pub payload: String,
}

/// The click a webhook hears about: only human clicks (bots are left out of stats by default,
/// and of webhooks always).
pub struct ClickFacts<'a> {
    pub link: &'a str,
    pub team: &'a str,
    pub at_ms: i64,
    pub country: &'a str,
    pub device: &'a str,
    pub browser: &'a str,
    pub os: &'a str,
    pub referrer: &'a str,
    pub qr: bool,
}

/// The `click` deliveries (and `qr.scanned` ones for clicks through a QR code) of `clicks` to
/// the `hooks` rows of [`CLICK_HOOKS_SQL`] (id, team id, events JSON) of each click's team.
pub fn click_deliveries<'a>(
    hooks: &[(String, String, String)],
    clicks: impl Iterator<Item = ClickFacts<'a>>,
) -> Vec<NewDelivery> {
    let hooks: Vec<(&str, &str, Vec<String>)> = hooks
        .iter()
        .filter_map(|(id, team, events)| {
            let events: Vec<String> = serde_json::from_str(events).ok()?;
            Some((id.as_str(), team.as_str(), events))
        })
        .collect();
    let wants = |events: &[String], t: &str| events.iter().any(|e| e == "*" || e == t);
    let mut out = Vec::new();
    if hooks.is_empty() {
        return out;
    }
    for c in clicks {
        let mine: Vec<&(&str, &str, Vec<String>)> =
            hooks.iter().filter(|h| h.1 == c.team).collect();
        if mine.is_empty() {
            continue;
        }
        let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let data = serde_json::json!({
            "linkId": c.link,
            "clickedAt": crate::validate::rfc3339(c.at_ms),
            "country": nonempty(c.country),
            "device": nonempty(c.device),
            "browser": nonempty(c.browser),
            "os": nonempty(c.os),
            "referrer": nonempty(c.referrer),
            "qr": c.qr,
        });
        let payload = data.to_string();
        let types: &[&'static str] = if c.qr {
            &["click", "qr.scanned"]
        } else {
            &["click"]
        };
        for &t in types {
            let event_id = crate::ids::new_id("evt");
            for (hook, team, events) in &mine {
                if wants(events, t) {
                    out.push(NewDelivery {
                        id: crate::ids::new_id("whd"),
                        webhook_id: (*hook).to_owned(),
                        team_id: (*team).to_owned(),
                        event_id: event_id.clone(),
                        event_type: t,
                        payload: payload.clone(),
                    });
                }
            }
        }
    }
    out
}

/// Queues one delivery to `hook`, due now.
pub async fn insert_delivery(
    conn: &mut AnyConnection,
    hook: &WebhookRow,
    event: &Event<'_>,
    now_ms: i64,
) -> sqlx::Result<String> {
    let id = crate::ids::new_id("whd");
    let body =
        serde_json::to_string(event.payload).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "INSERT INTO webhook_deliveries (id, webhook_id, team_id, event_id, event_type, payload, \
         state, attempts, next_attempt_at, lease_until, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, 0, $8)",
    )
    .bind(&id)
    .bind(&hook.id)
    .bind(&hook.team_id)
    .bind(event.id)
    .bind(event.event_type)
    .bind(body)
    .bind(now_ms)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    Ok(id)
}

#[derive(Debug, Clone)]
pub struct DeliveryRow {
    pub id: String,
    pub webhook_id: String,
    pub team_id: String,
    pub event_id: String,
    pub event_type: String,
    /// The event's `data`, as JSON text.
    pub payload: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

const DELIVERY_COLUMNS: &str = "id, webhook_id, team_id, event_id, event_type, payload, state, \
    attempts, next_attempt_at, last_status, last_error, created_at, finished_at";

fn delivery_from_row(row: &AnyRow) -> sqlx::Result<DeliveryRow> {
    Ok(DeliveryRow {
        id: row.try_get("id")?,
        webhook_id: row.try_get("webhook_id")?,
        team_id: row.try_get("team_id")?,
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("event_type")?,
        payload: row.try_get("payload")?,
        state: row.try_get("state")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_status: row.try_get("last_status")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

pub async fn get_delivery(db: &Db, team_id: &str, id: &str) -> sqlx::Result<Option<DeliveryRow>> {
    let row = sqlx::query(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE team_id = $1 AND id = $2"
    ))
    .bind(team_id)
    .bind(id)
    .fetch_optional(&db.pool)
    .await?;
    row.as_ref().map(delivery_from_row).transpose()
}

/// A page of one webhook's deliveries, newest first, and how many it has.
pub async fn list_deliveries(
    db: &Db,
    team_id: &str,
    webhook_id: &str,
    limit: u32,
    offset: u64,
) -> sqlx::Result<(Vec<DeliveryRow>, u64)> {
    let total: i64 = sqlx::query(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM webhook_deliveries WHERE team_id = $1 AND webhook_id = $2",
    )
    .bind(team_id)
    .bind(webhook_id)
    .fetch_one(&db.pool)
    .await?
    .try_get(0)?;
    let rows = sqlx::query(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE team_id = $1 AND webhook_id = $2 \
         ORDER BY created_at DESC, id DESC LIMIT {limit} OFFSET {offset}"
    ))
    .bind(team_id)
    .bind(webhook_id)
    .fetch_all(&db.pool)
    .await?;
    let rows = rows
        .iter()
        .map(delivery_from_row)
        .collect::<sqlx::Result<_>>()?;
    Ok((rows, u64::try_from(total).unwrap_or(0)))
}

/// Due deliveries, oldest first, as (delivery id, webhook id): not leased, of an active
/// webhook (a test event goes to an inactive one too; other deliveries of an inactive webhook
/// wait until it is active again).
pub async fn due(db: &Db, now_ms: i64, limit: u32) -> sqlx::Result<Vec<(String, String)>> {
    let rows = sqlx::query(&format!(
        "SELECT d.id, d.webhook_id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
         WHERE d.state = 'pending' AND d.next_attempt_at <= $1 AND d.lease_until <= $2 \
         AND (w.active = 1 OR d.event_type = $3) ORDER BY d.next_attempt_at, d.id LIMIT {limit}"
    ))
    .bind(now_ms)
    .bind(now_ms)
    .bind(TEST_EVENT)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// Leases one due delivery for `lease_ms` and returns it with its webhook; `None` when another
/// worker took it first (the lease is a conditional update) or the webhook is gone.
pub async fn claim(
    db: &Db,
    id: &str,
    now_ms: i64,
    lease_ms: i64,
) -> sqlx::Result<Option<(DeliveryRow, WebhookRow)>> {
    let mut w = db.begin_write().await?;
    let res = sqlx::query(
        "UPDATE webhook_deliveries SET lease_until = $1 \
         WHERE id = $2 AND state = 'pending' AND lease_until <= $3",
    )
    .bind(now_ms + lease_ms)
    .bind(id)
    .bind(now_ms)
    .execute(&mut *w.tx)
    .await?;
    if res.rows_affected() == 0 {
        w.commit().await?;
        return Ok(None);
    }
    let row = sqlx::query(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1"
    ))
    .bind(id)
    .fetch_one(&mut *w.tx)
    .await?;
    let delivery = delivery_from_row(&row)?;
    let hook = get(&mut *w.tx, &delivery.team_id, &delivery.webhook_id).await?;
    w.commit().await?;
    Ok(hook.map(|hook| (delivery, hook)))
}

/// What one attempt came to.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub delivered: bool,
    pub status: Option<i64>,
    pub error: Option<String>,
    /// When to try again; `None` with `delivered == false` means the attempts are used up.
    pub retry_at: Option<i64>,
}

pub async fn record_attempt(db: &Db, id: &str, outcome: &Outcome, now_ms: i64) -> sqlx::Result<()> {
    let state = match (outcome.delivered, outcome.retry_at) {
        (true, _) => "delivered",
        (false, Some(_)) => "pending",
        (false, None) => "failed",
    };
    let finished = (state != "pending").then_some(now_ms);
    let mut w = db.begin_write().await?;
    sqlx::query(
        "UPDATE webhook_deliveries SET state = $1, attempts = attempts + 1, next_attempt_at = $2, \
         lease_until = 0, last_status = $3, last_error = $4, finished_at = $5 WHERE id = $6",
    )
    .bind(state)
    .bind(outcome.retry_at.unwrap_or(now_ms))
    .bind(outcome.status)
    .bind(&outcome.error)
    .bind(finished)
    .bind(id)
    .execute(&mut *w.tx)
    .await?;
    w.commit().await
}

/// Deletes finished deliveries older than `cutoff_ms`.
pub async fn prune(db: &Db, cutoff_ms: i64) -> sqlx::Result<u64> {
    let mut w = db.begin_write().await?;
    let res =
        sqlx::query("DELETE FROM webhook_deliveries WHERE state <> 'pending' AND finished_at < $1")
            .bind(cutoff_ms)
            .execute(&mut *w.tx)
            .await?;
    w.commit().await?;
    Ok(res.rows_affected())
}
