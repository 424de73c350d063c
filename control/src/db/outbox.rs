//! The event outbox (`domain.verified`, `domain.deleted`, `certificate.issued`, …). An event is
//! appended in the same transaction as the change it describes, so it exists exactly when the
//! change does, and so do its webhook deliveries ([`super::webhooks::enqueue`]). Link events,
//! far more numerous, skip this table and go to the deliveries alone.

use sqlx::Row;

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub team_id: Option<String>,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub created_at: i64,
}

/// Appends one event and returns its id (`evt_…`).
pub async fn append(
    conn: &mut sqlx::AnyConnection,
    team_id: Option<&str>,
    event_type: &str,
    payload: &serde_json::Value,
    now_ms: i64,
) -> sqlx::Result<String> {
    let id = crate::ids::new_id("evt");
    let json = serde_json::to_string(payload).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "INSERT INTO outbox (id, team_id, event_type, payload, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&id)
    .bind(team_id)
    .bind(event_type)
    .bind(json)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    if let Some(team) = team_id {
        let hooks = super::webhooks::subscribers(conn, team, event_type).await?;
        let event = super::webhooks::Event {
            id: &id,
            event_type,
            payload,
        };
        super::webhooks::enqueue(conn, &hooks, &[event], now_ms).await?;
    }
    Ok(id)
}

/// A team's events, oldest first (what webhooks and tests read).
pub async fn list_for_team<'c, E>(exec: E, team_id: &str) -> sqlx::Result<Vec<Event>>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let rows = sqlx::query(
        "SELECT id, team_id, event_type, payload, created_at FROM outbox \
         WHERE team_id = $1 ORDER BY created_at, id",
    )
    .bind(team_id)
    .fetch_all(exec)
    .await?;
    rows.iter()
        .map(|r| {
            let payload: String = r.try_get("payload")?;
            Ok(Event {
                id: r.try_get("id")?,
                team_id: r.try_get("team_id")?,
                event_type: r.try_get("event_type")?,
                payload: serde_json::from_str(&payload)
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
}
