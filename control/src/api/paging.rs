//! `page` and `perPage` for every list, and the `pagination` object lists answer with.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};

pub const MAX_PER_PAGE: u32 = 100;
pub const DEFAULT_PER_PAGE: u32 = 20;

/// The query parameters of a list with no filters of its own (unknown ones, such as `key`,
/// are ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageParams {
    pub page: Option<u32>,
    #[serde(alias = "limit", alias = "per_page")]
    pub per_page: Option<u32>,
}

impl PageParams {
    pub fn paging(&self) -> ApiResult<Paging> {
        Paging::new(self.page, self.per_page)
    }
}

/// A checked page request: `page` from 1, `perPage` 1 to [`MAX_PER_PAGE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    pub page: u32,
    pub per_page: u32,
}

impl Paging {
    pub fn new(page: Option<u32>, per_page: Option<u32>) -> ApiResult<Paging> {
        let page = page.unwrap_or(1);
        if page == 0 {
            return Err(ApiError::invalid_field(&["page"], "must be at least 1"));
        }
        let per_page = per_page.unwrap_or(DEFAULT_PER_PAGE);
        if !(1..=MAX_PER_PAGE).contains(&per_page) {
            return Err(ApiError::invalid_field(
                &["perPage"],
                format!("must be between 1 and {MAX_PER_PAGE}"),
            ));
        }
        Ok(Paging { page, per_page })
    }

    /// Rows to skip.
    pub fn offset(&self) -> u64 {
        u64::from(self.page - 1) * u64::from(self.per_page)
    }

    /// This page of `all`, for lists small enough to read whole (domains, keys).
    pub fn slice<T>(&self, all: Vec<T>) -> Vec<T> {
        let skip = usize::try_from(self.offset()).unwrap_or(usize::MAX);
        all.into_iter()
            .skip(skip)
            .take(self.per_page as usize)
            .collect()
    }

    /// `{"items": …, "pagination": {page, perPage, total, totalPages}}`.
    pub fn envelope<T: Serialize>(&self, items: Vec<T>, total: u64) -> Value {
        json!({
            "items": items,
            "pagination": {
                "page": self.page,
                "perPage": self.per_page,
                "total": total,
                "totalPages": total.div_ceil(u64::from(self.per_page)),
            }
        })
    }
}

/// The OpenAPI parameters `page` and `perPage`.
pub fn openapi_parameters() -> Value {
    json!([
        {"name": "page", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "default": 1}, "description": "Page number"},
        {"name": "perPage", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE, "default": DEFAULT_PER_PAGE}, "description": "Page size (alias: limit)"},
    ])
}
