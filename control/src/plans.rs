//! Plans: what a team may do, by name. A team's plan is the `teams.plan` column; the catalogue
//! ([`Plans`]) comes from configuration: the built-in defaults below, extended or overridden by a
//! TOML or JSON file (`--plans-file`, `SLING_PLANS_FILE`) whose entries replace built-ins of the
//! same name.
//!
//! ```toml
//! [plans.free]
//! readPerMinute = 60
//! writePerMinute = 30
//! requestsPerHour = 200      # optional; omit for no hourly cap
//! linksPerMonth = 50         # optional; omit for unlimited
//! linksPerDay = 1000         # optional
//! domains = ["default"]      # default | premium | custom
//! customDomains = 5          # optional; omit for unlimited (with "custom" in domains)
//! apiLogs = false
//! apiLogRetentionDays = 30
//! ```
//!
//! A team whose plan is not in the catalogue (removed from the file) is treated as `free`, with
//! a warning, rather than refused: a configuration change must not lock customers out.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The plan new teams get.
pub const DEFAULT_PLAN: &str = "free";
/// The plan of the bootstrap admin team: the operator's own team is never throttled by a quota.
pub const UNLIMITED_PLAN: &str = "unlimited";

/// The kinds of domain a link can live on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DomainKind {
    /// The instance's default domain.
    Default,
    /// A shared domain that is not the default (a domain row without a team).
    Premium,
    /// A team's own verified domain.
    Custom,
}

/// One plan's limits. `None` means unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Plan {
    /// Filled in from the catalogue key.
    #[serde(default, skip_deserializing)]
    pub name: String,
    /// GET/HEAD requests per minute, per team (the whole minute may be spent in a burst).
    pub read_per_minute: u32,
    /// Other requests per minute, per team.
    pub write_per_minute: u32,
    /// All requests per hour, per team, on top of the per-minute limits.
    #[serde(default)]
    pub requests_per_hour: Option<u32>,
    /// Links created per calendar month (UTC).
    #[serde(default)]
    pub links_per_month: Option<u64>,
    /// Links created per calendar day (UTC).
    #[serde(default)]
    pub links_per_day: Option<u64>,
    /// The domains links may be created on.
    pub domains: Vec<DomainKind>,
    /// How many custom domains the team may add (with `custom` in `domains`).
    #[serde(default)]
    pub custom_domains: Option<u64>,
    /// Whether API calls are logged (`GET /api/v1/api-logs`).
    #[serde(default)]
    pub api_logs: bool,
    /// How long API call logs are kept.
    #[serde(default = "default_retention_days")]
    pub api_log_retention_days: u32,
}

fn default_retention_days() -> u32 {
    30
}

impl Plan {
    pub fn allows_domain(&self, kind: DomainKind) -> bool {
        self.domains.contains(&kind)
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.read_per_minute > 0 && self.write_per_minute > 0,
            "plan {}: readPerMinute and writePerMinute must be at least 1",
            self.name
        );
        anyhow::ensure!(
            self.requests_per_hour != Some(0),
            "plan {}: requestsPerHour must be at least 1 (omit it for no hourly cap)",
            self.name
        );
        anyhow::ensure!(
            !self.name.is_empty()
                && self.name.len() <= 50
                && self
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "plan name {:?} must be 1-50 characters of A-Z a-z 0-9 - _",
            self.name
        );
        Ok(())
    }
}

/// The plan catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plans {
    plans: BTreeMap<String, Plan>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlansFile {
    plans: BTreeMap<String, Plan>,
}

impl Default for Plans {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Plans {
    /// The built-in plans. Each figure says which seed document (`shared/seeds/`) it comes from;
    /// the few the seeds do not give are sling's choice and marked so.
    pub fn builtin() -> Self {
        use DomainKind::{Custom, Default, Premium};
        let plans = [
            Plan {
                name: "free".into(),
                // go2.gg (000): free plan 60 requests per minute.
                read_per_minute: 60,
                // urlplus.cn (003): 30 requests per minute.
                write_per_minute: 30,
                // like.do (001): free plan 200 requests per hour.
                requests_per_hour: Some(200),
                // like.do (001): free plan 50 links per month.
                links_per_month: Some(50),
                // urlplus.cn (003): at most 1000 short URLs per day.
                links_per_day: Some(1000),
                // like.do (001): the free domain for everyone; premium and custom need a paid plan.
                domains: vec![Default],
                // like.do (001): API call logs are for Pro and Lifetime users.
                // Custom domains need a paid plan (like.do 001); none to count.
                custom_domains: Some(0),
                api_logs: false,
                api_log_retention_days: 30,
            },
            Plan {
                name: "pro".into(),
                // go2.gg (000): pro 300 per minute; utm.bar (004): reads 300 per minute.
                read_per_minute: 300,
                // utm.bar (004): writes (create/update/disable/delete) 60 per minute.
                write_per_minute: 60,
                // like.do (001): pro plan 2000 requests per hour.
                requests_per_hour: Some(2000),
                // like.do (001): pro plan 1000 links per month.
                links_per_month: Some(1000),
                // urlplus.cn (003): 1000 per day.
                links_per_day: Some(1000),
                // like.do (001): premium domains need Pro or Lifetime; custom domains by plan.
                domains: vec![Default, Premium, Custom],
                // like.do (001): logs for Pro; retention 30 days is sling's choice.
                // sling's choice: the seeds give no per-plan figure.
                custom_domains: Some(5),
                api_logs: true,
                api_log_retention_days: 30,
            },
            Plan {
                name: "business".into(),
                // go2.gg (000): business 1000 per minute (one figure, applied to both classes).
                read_per_minute: 1000,
                write_per_minute: 1000,
                // No seed gives hourly or monthly figures for business: sling's choice, none.
                requests_per_hour: None,
                links_per_month: None,
                // sling's choice: ten times urlplus.cn's (003) daily cap.
                links_per_day: Some(10_000),
                domains: vec![Default, Premium, Custom],
                // sling's choice: logs kept 90 days.
                // sling's choice.
                custom_domains: Some(50),
                api_logs: true,
                api_log_retention_days: 90,
            },
            Plan {
                name: "lifetime".into(),
                // like.do (001) gives lifetime only an hourly figure; per minute as pro
                // (go2.gg 000 / utm.bar 004), which lifetime matches feature for feature.
                read_per_minute: 300,
                write_per_minute: 60,
                // like.do (001): lifetime plan 5000 requests per hour.
                requests_per_hour: Some(5000),
                // like.do (001): lifetime links are unlimited.
                links_per_month: None,
                links_per_day: None,
                // like.do (001): premium domains for Pro or Lifetime.
                domains: vec![Default, Premium, Custom],
                // like.do (001): logs for Lifetime.
                // sling's choice: as pro, which lifetime matches feature for feature.
                custom_domains: Some(5),
                api_logs: true,
                api_log_retention_days: 30,
            },
            Plan {
                // sling's own: the bootstrap admin team (the operator) and load tests.
                name: UNLIMITED_PLAN.into(),
                read_per_minute: 1_000_000,
                write_per_minute: 1_000_000,
                requests_per_hour: None,
                links_per_month: None,
                links_per_day: None,
                domains: vec![Default, Premium, Custom],
                custom_domains: None,
                api_logs: false,
                api_log_retention_days: 30,
            },
        ];
        Self {
            plans: plans.into_iter().map(|p| (p.name.clone(), p)).collect(),
        }
    }

    /// The built-ins overridden and extended by `path` (TOML, or JSON when it ends in `.json`).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let is_json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        Self::parse(&text, is_json).with_context(|| format!("plans file {}", path.display()))
    }

    /// Parses a plans document (see the module docs) over the built-ins.
    pub fn parse(text: &str, json: bool) -> anyhow::Result<Self> {
        let file: PlansFile = if json {
            serde_json::from_str(text)?
        } else {
            toml::from_str(text)?
        };
        let mut out = Self::builtin();
        for (name, mut plan) in file.plans {
            plan.name = name.clone();
            plan.validate()?;
            out.plans.insert(name, plan);
        }
        Ok(out)
    }

    /// A catalogue of exactly these plans plus the built-ins (for tests and embedding).
    pub fn with(mut self, plan: Plan) -> Self {
        self.plans.insert(plan.name.clone(), plan);
        self
    }

    pub fn get(&self, name: &str) -> Option<&Plan> {
        self.plans.get(name)
    }

    /// The plan called `name`, or the default plan when the catalogue no longer has it.
    pub fn resolve(&self, name: &str) -> &Plan {
        if let Some(p) = self.plans.get(name) {
            return p;
        }
        tracing::warn!(plan = name, "unknown plan; applying the default plan");
        self.plans
            .get(DEFAULT_PLAN)
            .or_else(|| self.plans.values().next())
            .unwrap_or_else(|| &FALLBACK)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Plan> {
        self.plans.values()
    }
}

/// Only reachable if a catalogue were empty, which [`Plans`] never is (built-ins stay).
static FALLBACK: std::sync::LazyLock<Plan> = std::sync::LazyLock::new(|| Plan {
    name: DEFAULT_PLAN.into(),
    read_per_minute: 60,
    write_per_minute: 30,
    requests_per_hour: None,
    links_per_month: Some(0),
    links_per_day: Some(0),
    domains: vec![DomainKind::Default],
    custom_domains: Some(0),
    api_logs: false,
    api_log_retention_days: 30,
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_and_overrides() {
        let p = Plans::builtin();
        for name in ["free", "pro", "business", "lifetime", "unlimited"] {
            assert!(p.get(name).is_some(), "{name}");
        }
        assert_eq!(p.get("free").map(|p| p.links_per_month), Some(Some(50)));
        let toml = "[plans.free]\nreadPerMinute = 5\nwritePerMinute = 2\nlinksPerDay = 3\ndomains = [\"default\"]\n\n[plans.team]\nreadPerMinute = 10\nwritePerMinute = 10\ndomains = [\"default\", \"custom\"]\napiLogs = true\napiLogRetentionDays = 7\n";
        let p = Plans::parse(toml, false).map_err(|e| e.to_string());
        let p = p
            .as_ref()
            .map(|p| (p.get("free").cloned(), p.get("team").cloned()));
        let Ok((Some(free), Some(team))) = p else {
            panic!("{p:?}")
        };
        assert_eq!(
            (
                free.read_per_minute,
                free.links_per_day,
                free.links_per_month
            ),
            (5, Some(3), None)
        );
        assert!(team.api_logs && team.allows_domain(DomainKind::Custom));
        let json = r#"{"plans": {"x": {"readPerMinute": 1, "writePerMinute": 1, "domains": []}}}"#;
        assert!(Plans::parse(json, true).is_ok());
        let bad = r#"{"plans": {"x": {"readPerMinute": 0, "writePerMinute": 1, "domains": []}}}"#;
        assert!(Plans::parse(bad, true).is_err());
        let unknown = r#"{"plans": {"x": {"rpm": 1}}}"#;
        assert!(Plans::parse(unknown, true).is_err());
        assert_eq!(Plans::builtin().resolve("gone").name, "free");
    }
}
