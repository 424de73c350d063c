//! The full state proxies load: every domain and every link, read straight from the database
//! into a [`SnapshotBody`]. Links are streamed row by row (never `fetch_all`), so building a
//! snapshot of a million links holds one copy of them, not two.

use futures_util::TryStreamExt;
use sling_shared::link::DomainRecord;
use sling_shared::snapshot::SnapshotBody;

use super::{Db, domains, links};

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
            },
        );
    }
    drop(rows);

    let mut rows = sqlx::query(links::SELECT).fetch(&db.pool);
    while let Some(row) = rows.try_next().await? {
        let l = links::from_row(&row)?;
        body.insert_link(&l.host, l.slug.clone(), links::edge_record(&l));
    }
    Ok(body)
}
