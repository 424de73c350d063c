//! The control plane's database for the scenarios that compare SQLite and Postgres: a fresh
//! Postgres database per run (created with `psql`, dropped at the end), and starting `sling serve`
//! on either backend.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::cli::{Backend, Postgres};
use crate::env::{self, Tool};
use crate::sling::{self, Control};

pub const PSQL: Tool = Tool {
    name: "psql",
    package: "postgresql-client",
};

/// A database created for this run; dropped (with `WITH (FORCE)`) when this is dropped.
pub struct FreshDb {
    psql: std::path::PathBuf,
    server: String,
    name: String,
    pub url: String,
}

impl FreshDb {
    /// `CREATE DATABASE sling_bench_<pid>_<n>` on `server` (a `postgres://` URL without a path).
    pub fn create(server: &str, tag: &str) -> anyhow::Result<FreshDb> {
        let psql = env::find_tool(&PSQL)?;
        let server = server.trim_end_matches('/').to_owned();
        let name = format!(
            "sling_bench_{tag}_{}_{}",
            std::process::id(),
            jiff::Timestamp::now().as_second()
        );
        let db = FreshDb {
            url: format!("{server}/{name}"),
            psql,
            server,
            name,
        };
        db.admin(&format!("CREATE DATABASE {}", db.name))
            .with_context(|| format!("creating a fresh Postgres database on {}", db.server))?;
        eprintln!("created Postgres database {}", db.name);
        Ok(db)
    }

    fn admin(&self, sql: &str) -> anyhow::Result<()> {
        run_psql(&self.psql, &format!("{}/postgres", self.server), sql)
    }
}

/// Runs one statement with `psql` against `db_url`; its stderr is the error.
fn run_psql(psql: &Path, db_url: &str, sql: &str) -> anyhow::Result<()> {
    let out = Command::new(psql)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db_url, "-c", sql])
        .stdin(Stdio::null())
        .output()
        .context("running psql")?;
    if !out.status.success() {
        bail!(
            "psql `{sql}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Drop for FreshDb {
    fn drop(&mut self) {
        match self.admin(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )) {
            Ok(()) => eprintln!("dropped Postgres database {}", self.name),
            Err(e) => eprintln!("warning: could not drop database {}: {e:#}", self.name),
        }
    }
}

/// A running control plane and the database it owns. Field order matters: the control plane
/// stops before its fresh database is dropped.
pub struct ControlOn {
    pub control: Control,
    /// The Postgres URL (`None` on SQLite).
    url: Option<String>,
    _fresh: Option<FreshDb>,
}

impl ControlOn {
    /// The Postgres URL without credentials, for the report (`None` on SQLite).
    pub fn database(&self) -> Option<String> {
        self.url.as_deref().map(redact)
    }

    /// On Postgres, `VACUUM ANALYZE` the links table: right after a bulk import the planner has
    /// no statistics (it guessed 136 rows for 100,000 and sorted them on disk) and no visibility
    /// map (index-only scans read the heap), which autovacuum fixes within a minute or two of a
    /// real import. Nothing to do on SQLite.
    pub fn settle(&self) -> anyhow::Result<()> {
        let Some(url) = &self.url else {
            return Ok(());
        };
        run_psql(&env::find_tool(&PSQL)?, url, "VACUUM ANALYZE links")
    }
}

/// Starts `sling serve` with its data directory in `data_dir`, on SQLite (the default, inside
/// `data_dir`) or on Postgres (`--database-url`, or a fresh database).
pub async fn start_control_on(
    backend: Backend,
    pg: &Postgres,
    bin: &Path,
    pin: &[String],
    data_dir: &Path,
    extra_args: &[String],
    log_dir: &Path,
) -> anyhow::Result<ControlOn> {
    let mut args = extra_args.to_vec();
    let (fresh, url) = match backend {
        Backend::Sqlite => (None, None),
        Backend::Postgres => match &pg.database_url {
            Some(url) => (None, Some(url.clone())),
            None => {
                let db = FreshDb::create(&pg.postgres_server, "db")?;
                let url = db.url.clone();
                (Some(db), Some(url))
            }
        },
    };
    if let Some(url) = &url {
        args.extend(["--database-url".into(), url.clone()]);
    }
    let control = sling::start_control(bin, pin, data_dir, &args, log_dir).await?;
    Ok(ControlOn {
        control,
        url,
        _fresh: fresh,
    })
}

/// `postgres://user:secret@host/db` → `postgres://user@host/db`.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or_default();
            format!("{}{user}{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact("postgres://u:pw@h:5432/d"),
            "postgres://u@h:5432/d"
        );
        assert_eq!(super::redact("postgres://u@h/d"), "postgres://u@h/d");
    }
}
