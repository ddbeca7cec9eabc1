//! Route handlers, one module per resource. Handlers are thin: extract, authorise, call a
//! repository inside a tenant transaction, answer.

use axum::Router;
use axum::routing::{get, post};

use crate::app::AppState;

pub mod health;
pub mod leads;
pub mod login;
pub mod users;
pub mod webhooks;

/// Everything under `/api/v1`.
pub fn api_v1() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login::login))
        .route("/me", get(users::me))
        .route("/users", get(users::list).post(users::create))
        .route("/users/{id}", get(users::get))
        .route("/leads", get(leads::list).post(leads::create))
        .route("/leads/{id}", get(leads::get).patch(leads::update))
}

/// `?limit=&cursor=` on list routes.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

impl PageQuery {
    pub const DEFAULT_LIMIT: i64 = 50;
    pub const MAX_LIMIT: i64 = 200;

    pub fn limit(&self) -> Result<i64, crate::error::ApiError> {
        match self.limit {
            None => Ok(Self::DEFAULT_LIMIT),
            Some(n) if (1..=Self::MAX_LIMIT).contains(&n) => Ok(n),
            Some(n) => Err(crate::error::ApiError::Invalid(format!(
                "limit must be between 1 and {}, not {n}",
                Self::MAX_LIMIT
            ))),
        }
    }
}

/// A page of a list: the items and, when more follow, the cursor of the next page.
#[derive(Debug, serde::Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}
