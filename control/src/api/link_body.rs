//! The link object on the wire: [`LinkInput`] (create, update and bulk bodies), its validated
//! form [`LinkChanges`], and [`LinkView`] (what every endpoint returns).
//!
//! Input fields are tri-state: absent (leave as is), `null` (clear, or reset to the default for
//! fields that cannot be empty), or a value. Create is "apply these changes to a fresh link";
//! update is "apply them to the stored one", so both share one validation path.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::db::domains::DomainRow;
use crate::db::links::LinkRow;
use crate::error::ApiError;
use crate::validate;

/// `Some(None)` for an explicit `null`, `Some(Some(v))` for a value, `None` (via
/// `#[serde(default)]`) when the field is absent.
pub(crate) fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

type Tri<T> = Option<Option<T>>;

/// A create or update body. Unknown fields are refused; common snake_case spellings of the
/// seeds' APIs are accepted as aliases.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LinkInput {
    #[serde(
        default,
        deserialize_with = "present",
        alias = "url",
        alias = "destination_url",
        alias = "targetUrl",
        alias = "target_url",
        alias = "original_url"
    )]
    pub destination_url: Tri<String>,
    #[serde(default, deserialize_with = "present", alias = "custom_code")]
    pub slug: Tri<String>,
    #[serde(default, deserialize_with = "present")]
    pub domain: Tri<String>,
    #[serde(default, deserialize_with = "present")]
    pub title: Tri<String>,
    #[serde(default, deserialize_with = "present")]
    pub description: Tri<String>,
    #[serde(default, deserialize_with = "present")]
    pub tags: Tri<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    pub password: Tri<String>,
    #[serde(default, deserialize_with = "present", alias = "expires_at")]
    pub expires_at: Tri<String>,
    #[serde(default, deserialize_with = "present", alias = "expired_url")]
    pub expired_url: Tri<String>,
    #[serde(default, deserialize_with = "present", alias = "click_limit")]
    pub click_limit: Tri<i64>,
    #[serde(default, deserialize_with = "present", alias = "geo_targets")]
    pub geo_targets: Tri<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "present", alias = "device_targets")]
    pub device_targets: Tri<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "present", alias = "ios_url")]
    pub ios_url: Tri<String>,
    #[serde(default, deserialize_with = "present", alias = "android_url")]
    pub android_url: Tri<String>,
    #[serde(default, deserialize_with = "present", alias = "utm_source")]
    pub utm_source: Tri<String>,
    #[serde(default, deserialize_with = "present", alias = "utm_medium")]
    pub utm_medium: Tri<String>,
    #[serde(default, deserialize_with = "present", alias = "utm_campaign")]
    pub utm_campaign: Tri<String>,
    #[serde(default, deserialize_with = "present", alias = "utm_term")]
    pub utm_term: Tri<String>,
    #[serde(default, deserialize_with = "present", alias = "utm_content")]
    pub utm_content: Tri<String>,
    #[serde(default, deserialize_with = "present", alias = "external_id")]
    pub external_id: Tri<String>,
    #[serde(default, deserialize_with = "present", alias = "redirect_type")]
    pub redirect_type: Tri<u16>,
    #[serde(default, deserialize_with = "present", alias = "forward_query")]
    pub forward_query: Tri<bool>,
    #[serde(default, deserialize_with = "present", alias = "is_active")]
    pub active: Tri<bool>,
    #[serde(default, deserialize_with = "present")]
    pub archived: Tri<bool>,
    #[serde(default, deserialize_with = "present")]
    pub visible: Tri<bool>,
}

/// A validated input: each field `None` = leave as is, `Some(v)` = set to `v` (for nullable
/// columns `v` is itself an `Option`). URLs are normalised strings.
#[derive(Debug, Default)]
pub struct LinkChanges {
    pub destination_url: Option<String>,
    pub slug: Option<String>,
    /// Host the client named (`Some(None)` = the default domain); resolved by the handler.
    pub domain: Option<Option<String>>,
    pub title: Option<Option<String>>,
    pub description: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
    /// A password to hash (`Some(None)` clears the password).
    pub password: Option<Option<String>>,
    pub expires_at: Option<Option<i64>>,
    pub expired_url: Option<Option<String>>,
    pub click_limit: Option<Option<i64>>,
    pub geo_targets: Option<BTreeMap<String, String>>,
    pub device_targets: Option<BTreeMap<String, String>>,
    pub ios_url: Option<Option<String>>,
    pub android_url: Option<Option<String>>,
    pub utm: [Option<Option<String>>; 5],
    pub external_id: Option<Option<String>>,
    pub redirect_type: Option<i64>,
    pub forward_query: Option<bool>,
    pub active: Option<bool>,
    pub archived: Option<bool>,
    pub visible: Option<bool>,
}

type TargetCheck = fn(BTreeMap<String, String>) -> Result<BTreeMap<String, url::Url>, ApiError>;

const UTM_FIELDS: [&str; 5] = [
    "utmSource",
    "utmMedium",
    "utmCampaign",
    "utmTerm",
    "utmContent",
];

impl LinkInput {
    /// Checks every field the input sets. `creating` makes `destinationUrl` required.
    pub fn validate(self, creating: bool, now_ms: i64) -> Result<LinkChanges, ApiError> {
        let mut c = LinkChanges::default();
        let url = |path: &[&str], raw: &str| -> Result<String, ApiError> {
            Ok(validate::url(path, raw)?.to_string())
        };
        let opt_url = |path: &[&str], v: Tri<String>| -> Result<Option<Option<String>>, ApiError> {
            match v {
                None => Ok(None),
                Some(None) => Ok(Some(None)),
                Some(Some(s)) if s.is_empty() => Ok(Some(None)),
                Some(Some(s)) => Ok(Some(Some(url(path, &s)?))),
            }
        };

        c.destination_url = match self.destination_url {
            Some(Some(s)) => Some(url(&["destinationUrl"], &s)?),
            Some(None) => {
                return Err(ApiError::invalid_field(
                    &["destinationUrl"],
                    "must not be null",
                ));
            }
            None if creating => {
                return Err(ApiError::invalid_field(&["destinationUrl"], "is required"));
            }
            None => None,
        };
        c.slug = match self.slug {
            Some(Some(s)) => Some(validate::slug(&s)?),
            Some(None) if !creating => {
                return Err(ApiError::invalid_field(&["slug"], "must not be null"));
            }
            _ => None,
        };
        c.domain = match self.domain {
            Some(Some(h)) if h.trim().is_empty() => Some(None),
            Some(Some(h)) => Some(Some(
                sling_shared::host::normalize_host(&h)
                    .map_err(|e| ApiError::invalid_field(&["domain"], e.to_string()))?,
            )),
            Some(None) => Some(None),
            None => None,
        };
        c.title = text(self.title, &["title"], validate::MAX_TITLE_LEN, false)?;
        c.description = text(
            self.description,
            &["description"],
            validate::MAX_DESCRIPTION_LEN,
            true,
        )?;
        c.tags = match self.tags {
            Some(Some(t)) => Some(validate::tags(t)?),
            Some(None) => Some(Vec::new()),
            None => None,
        };
        c.password = match self.password {
            Some(Some(p)) => Some(Some(validate::password(&p)?.to_owned())),
            Some(None) => Some(None),
            None => None,
        };
        c.expires_at = match self.expires_at {
            Some(Some(s)) => Some(Some(validate::future_time(&["expiresAt"], &s, now_ms)?)),
            Some(None) => Some(None),
            None => None,
        };
        c.expired_url = opt_url(&["expiredUrl"], self.expired_url)?;
        c.click_limit = match self.click_limit {
            Some(Some(n)) => Some(Some(validate::click_limit(n)?)),
            Some(None) => Some(None),
            None => None,
        };
        let targets = |v: Tri<BTreeMap<String, String>>,
                       check: TargetCheck|
         -> Result<Option<BTreeMap<String, String>>, ApiError> {
            match v {
                None => Ok(None),
                Some(None) => Ok(Some(BTreeMap::new())),
                Some(Some(m)) => Ok(Some(
                    check(m)?
                        .into_iter()
                        .map(|(k, u)| (k, u.to_string()))
                        .collect(),
                )),
            }
        };
        c.geo_targets = targets(self.geo_targets, validate::geo_targets)?;
        c.device_targets = targets(self.device_targets, validate::device_targets)?;
        c.ios_url = opt_url(&["iosUrl"], self.ios_url)?;
        c.android_url = opt_url(&["androidUrl"], self.android_url)?;
        let utm = [
            self.utm_source,
            self.utm_medium,
            self.utm_campaign,
            self.utm_term,
            self.utm_content,
        ];
        for (i, v) in utm.into_iter().enumerate() {
            c.utm[i] = match v {
                Some(Some(s)) => Some(validate::utm(UTM_FIELDS[i], &s)?),
                Some(None) => Some(None),
                None => None,
            };
        }
        c.external_id = match self.external_id {
            Some(Some(s)) => Some(Some(validate::external_id(&s)?)),
            Some(None) => Some(None),
            None => None,
        };
        c.redirect_type = match self.redirect_type {
            Some(Some(n)) => Some(i64::from(validate::redirect_type(n)?)),
            Some(None) => Some(302),
            None => None,
        };
        c.forward_query = self.forward_query.map(|v| v.unwrap_or(true));
        c.active = self.active.map(|v| v.unwrap_or(true));
        c.archived = self.archived.map(|v| v.unwrap_or(false));
        c.visible = self.visible.map(|v| v.unwrap_or(true));
        Ok(c)
    }
}

fn text(
    v: Tri<String>,
    path: &[&str],
    max: usize,
    multiline: bool,
) -> Result<Option<Option<String>>, ApiError> {
    match v {
        Some(Some(s)) => Ok(Some(validate::text(path, &s, max, multiline)?)),
        Some(None) => Ok(Some(None)),
        None => Ok(None),
    }
}

impl LinkChanges {
    /// Every URL this input sets, with its field path: these must not point at sling itself.
    pub fn urls(&self) -> Vec<(Vec<String>, &str)> {
        let mut out: Vec<(Vec<String>, &str)> = Vec::new();
        let p = |s: &str| vec![s.to_owned()];
        if let Some(u) = &self.destination_url {
            out.push((p("destinationUrl"), u));
        }
        for (name, v) in [
            ("expiredUrl", &self.expired_url),
            ("iosUrl", &self.ios_url),
            ("androidUrl", &self.android_url),
        ] {
            if let Some(Some(u)) = v {
                out.push((p(name), u));
            }
        }
        for (kind, m) in [
            ("geoTargets", &self.geo_targets),
            ("deviceTargets", &self.device_targets),
        ] {
            for (k, u) in m.iter().flatten() {
                out.push((vec![kind.to_owned(), k.clone()], u));
            }
        }
        out
    }

    /// Applies the changes to `row`. `domain` is the resolved domain when the input named one;
    /// `password_hash` the hash of the new password when it set one.
    pub fn apply(
        self,
        row: &mut LinkRow,
        domain: Option<&DomainRow>,
        password_hash: Option<Option<String>>,
    ) {
        fn set<T>(field: &mut T, v: Option<T>) {
            if let Some(v) = v {
                *field = v;
            }
        }
        if let Some(d) = domain {
            row.domain_id = d.id.clone();
            row.host = d.host.clone();
            row.domain_is_default = d.is_default;
        }
        set(&mut row.destination_url, self.destination_url);
        set(&mut row.slug, self.slug);
        set(&mut row.title, self.title);
        set(&mut row.description, self.description);
        set(&mut row.tags, self.tags);
        set(&mut row.password_hash, password_hash);
        set(&mut row.expires_at, self.expires_at);
        set(&mut row.expired_url, self.expired_url);
        set(&mut row.click_limit, self.click_limit);
        set(&mut row.geo_targets, self.geo_targets);
        set(&mut row.device_targets, self.device_targets);
        set(&mut row.ios_url, self.ios_url);
        set(&mut row.android_url, self.android_url);
        let [s, m, c, t, co] = self.utm;
        set(&mut row.utm_source, s);
        set(&mut row.utm_medium, m);
        set(&mut row.utm_campaign, c);
        set(&mut row.utm_term, t);
        set(&mut row.utm_content, co);
        set(&mut row.external_id, self.external_id);
        set(&mut row.redirect_type, self.redirect_type);
        set(&mut row.forward_query, self.forward_query);
        set(&mut row.active, self.active);
        set(&mut row.archived, self.archived);
        set(&mut row.visible, self.visible);
    }
}

/// The link object every endpoint returns (PRODUCT.md "The link object").
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkView {
    pub id: String,
    pub domain: String,
    pub slug: String,
    pub short_url: String,
    pub destination_url: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub has_password: bool,
    pub expires_at: Option<String>,
    pub expired_url: Option<String>,
    pub click_limit: Option<i64>,
    pub geo_targets: BTreeMap<String, String>,
    pub device_targets: BTreeMap<String, String>,
    pub ios_url: Option<String>,
    pub android_url: Option<String>,
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
    pub utm_term: Option<String>,
    pub utm_content: Option<String>,
    pub external_id: Option<String>,
    pub redirect_type: i64,
    pub forward_query: bool,
    pub active: bool,
    pub archived: bool,
    pub visible: bool,
    pub clicks: i64,
    pub channel: String,
    pub created_at: String,
    pub updated_at: String,
}

impl LinkView {
    /// `short_url_base` is the configured base of the default domain's short URLs.
    pub fn new(row: LinkRow, short_url_base: &str) -> Self {
        let short_url = if row.domain_is_default {
            format!("{}/{}", short_url_base.trim_end_matches('/'), row.slug)
        } else {
            format!("https://{}/{}", row.host, row.slug)
        };
        LinkView {
            short_url,
            has_password: row.password_hash.is_some(),
            expires_at: row.expires_at.map(validate::rfc3339),
            created_at: validate::rfc3339(row.created_at),
            updated_at: validate::rfc3339(row.updated_at),
            id: row.id,
            domain: row.host,
            slug: row.slug,
            destination_url: row.destination_url,
            title: row.title,
            description: row.description,
            tags: row.tags,
            expired_url: row.expired_url,
            click_limit: row.click_limit,
            geo_targets: row.geo_targets,
            device_targets: row.device_targets,
            ios_url: row.ios_url,
            android_url: row.android_url,
            utm_source: row.utm_source,
            utm_medium: row.utm_medium,
            utm_campaign: row.utm_campaign,
            utm_term: row.utm_term,
            utm_content: row.utm_content,
            external_id: row.external_id,
            redirect_type: row.redirect_type,
            forward_query: row.forward_query,
            active: row.active,
            archived: row.archived,
            visible: row.visible,
            clicks: row.clicks,
            channel: row.channel,
        }
    }
}
