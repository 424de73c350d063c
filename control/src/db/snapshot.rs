//! The full state proxies load: every domain and every link, read straight from the database
//! into a [`SnapshotBody`] ([`load_body`]), or brought up to date from an earlier one with the
//! change feed ([`apply_changes`]). Links are streamed row by row (never `fetch_all`), so building
//! a snapshot of a million links holds one copy of them, not two.

use futures_util::TryStreamExt;
use sling_shared::feed::MAX_PAGE;
use sling_shared::link::DomainRecord;
use sling_shared::snapshot::SnapshotBody;

use super::{Db, changes, domains, links};

/// Applies the feed's changes with `after < seq <= upto` to `body`, a snapshot at `after`, one
/// page at a time; returns how many were applied, or `None` when the feed no longer holds all of
/// them (pruned by another replica), in which case `body` is unusable and a full read is needed.
pub async fn apply_changes(
    db: &Db,
    body: &mut SnapshotBody,
    after: u64,
    upto: u64,
) -> sqlx::Result<Option<usize>> {
    // A gap in the sequence (a rolled-back append) also lands here, costing one full read.
    if changes::oldest(db).await?.is_some_and(|o| o > after + 1) {
        return Ok(None);
    }
    let mut cursor = after;
    let mut applied = 0;
    while cursor < upto {
        let page = changes::after(db, cursor, MAX_PAGE).await?;
        let Some(last) = page.last() else { break };
        cursor = last.seq;
        for change in page.iter().take_while(|c| c.seq <= upto) {
            body.apply(&change.op);
            applied += 1;
        }
    }
    Ok(Some(applied))
}

/// Every domain (with its root and not-found redirects) and every link, converted with
/// [`links::edge_record`], the same function the change feed uses.
pub async fn load_body(db: &Db, default_host: &str) -> anyhow::Result<SnapshotBody> {
    let mut body = SnapshotBody::new(default_host);

    let sql = format!("SELECT {} FROM domains", domains::COLUMNS);
    let mut rows = sqlx::query(&sql).fetch(&db.pool);
    while let Some(row) = rows.try_next().await? {
        let d = domains::from_row(&row)?;
        body.domains.insert(
            d.host.clone(),
            DomainRecord {
                id: d.id,
                host: d.host,
                root_redirect: d.root_redirect,
                not_found_redirect: d.not_found_redirect,
                pages: d.pages,
                links: Default::default(),
                bio_pages: Default::default(),
            },
        );
    }
    drop(rows);

    let mut rows = sqlx::query(links::SELECT).fetch(&db.pool);
    while let Some(row) = rows.try_next().await? {
        let l = links::from_row(&row)?;
        body.insert_link(&l.host, l.slug.clone(), links::edge_record(&l));
    }
    drop(rows);

    for (host, handle, page) in super::galleries::published(db).await? {
        body.insert_bio_page(&host, handle, page);
    }
    Ok(body)
}
