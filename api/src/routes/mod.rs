//! Route handlers, one module per resource. Handlers are thin: extract, authorise, call a
//! repository inside a tenant transaction, answer.

use axum::Router;
use axum::routing::{get, patch, post};

use crate::app::AppState;

pub mod affiliates;
pub mod analytics;
pub mod approvals;
pub mod articles;
pub mod contacts;
pub mod conversations;
pub mod deals;
pub mod disputes;
pub mod guarantees;
pub mod health;
pub mod leads;
pub mod login;
pub mod meetings;
pub mod metrics;
pub mod notifications;
pub mod platform;
pub mod proposals;
pub mod users;
pub mod webhooks;

/// Everything under `/api/v1`.
pub fn api_v1() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login::login))
        .route("/me", get(users::me))
        .route("/users", get(users::list).post(users::create))
        .route("/users/{id}", get(users::get))
        .route(
            "/users/{id}/working-hours",
            get(meetings::get_hours).put(meetings::set_hours),
        )
        .route("/meetings", get(meetings::list).post(meetings::create))
        .route("/meetings/{id}", get(meetings::get).patch(meetings::update))
        .route("/meetings/{id}/ics", get(meetings::ics))
        .route("/contacts", get(contacts::list).post(contacts::create))
        .route("/contacts/{id}", get(contacts::get).patch(contacts::update))
        .route("/deals", get(deals::list).post(deals::create))
        .route("/analytics/llm-usage", get(analytics::llm_usage))
        .route(
            "/settings/llm",
            get(analytics::get_llm_settings).put(analytics::put_llm_settings),
        )
        .route("/deals/forecast", get(deals::forecast))
        .route("/deals/summary", get(deals::summary))
        .route("/deals/{id}", get(deals::get).patch(deals::update))
        .route(
            "/pipeline/stages",
            get(deals::stages).post(deals::create_stage),
        )
        .route("/pipeline/stages/{id}", patch(deals::update_stage))
        .route("/articles", get(articles::list).post(articles::create))
        .route("/articles/search", get(articles::search))
        .route(
            "/articles/{id}",
            get(articles::get)
                .put(articles::replace)
                .delete(articles::delete),
        )
        .route("/proposals", get(proposals::list).post(proposals::create))
        .route(
            "/proposals/{id}",
            get(proposals::get).patch(proposals::update),
        )
        .route("/conversations", get(conversations::list))
        .route("/conversations/{id}", get(conversations::get))
        .route("/conversations/{id}/messages", get(conversations::messages))
        .route("/conversations/{id}/turns", get(conversations::turns))
        .route(
            "/conversations/{id}/hand-back",
            post(conversations::hand_back),
        )
        .route("/notifications", get(notifications::list))
        .route("/notifications/{id}", patch(notifications::mark))
        .route("/audit-log", get(notifications::audit_log))
        .route(
            "/affiliates",
            get(affiliates::list).post(affiliates::create),
        )
        .route(
            "/affiliates/{id}",
            get(affiliates::get).patch(affiliates::update),
        )
        .route(
            "/commission-rules",
            get(affiliates::rules).post(affiliates::create_rule),
        )
        .route("/commission-rules/{id}", patch(affiliates::update_rule))
        .route("/commissions", get(affiliates::commissions))
        .route("/commissions/{id}", patch(affiliates::update_commission))
        .route("/commissions/payouts", get(affiliates::payouts))
        .route(
            "/guarantee-claims",
            get(guarantees::list).post(guarantees::create),
        )
        .route("/approvals", get(approvals::list))
        .route("/approvals/{id}", get(approvals::get))
        .route("/approvals/{id}/decision", post(approvals::decide))
        .route(
            "/guarantee-claims/{id}",
            get(guarantees::get).patch(guarantees::review),
        )
        .route(
            "/guarantee-claims/{id}/evidence",
            post(guarantees::add_evidence),
        )
        .route("/guarantee-claims/{id}/refund", post(guarantees::refund))
        .route("/platform/tenants", get(platform::tenants))
        .route("/disputes", get(disputes::list).post(disputes::create))
        .route("/disputes/{id}", get(disputes::get).patch(disputes::update))
        .route("/leads", get(leads::list).post(leads::create))
        .route("/leads/{id}", get(leads::get).patch(leads::update))
        .route("/leads/{id}/assign", post(leads::assign))
        .route(
            "/users/{id}/sales-profile",
            get(leads::get_profile).put(leads::set_profile),
        )
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
        Self::limit_of(self.limit)
    }

    /// `?limit=` checked: 1 to 200, 50 when absent.
    pub fn limit_of(limit: Option<i64>) -> Result<i64, crate::error::ApiError> {
        match limit {
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

impl<T> Page<T> {
    /// A page from up to `limit + 1` rows fetched after `after`: the extra row only says that
    /// more follow, and the last kept row's cursor leads there.
    pub fn from_rows(
        items: Vec<T>,
        limit: i64,
        cursor_of: impl Fn(&T) -> crate::repo::Cursor,
    ) -> Self {
        Self::from_rows_with(items, limit, |last| cursor_of(last).encode())
    }

    /// [`Page::from_rows`] for lists whose cursor is not a time and an id (a sequence number).
    pub fn from_rows_with(mut items: Vec<T>, limit: i64, cursor_of: impl Fn(&T) -> String) -> Self {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(cursor_of)
        } else {
            None
        };
        Page { items, next_cursor }
    }
}

/// `?cursor=` of a newest-first list.
pub fn parse_cursor(
    raw: Option<&str>,
) -> Result<Option<crate::repo::Cursor>, crate::error::ApiError> {
    raw.map(|c| {
        crate::repo::Cursor::decode(c)
            .ok_or_else(|| crate::error::ApiError::BadRequest("cursor is not valid".into()))
    })
    .transpose()
}

/// For a body field that may be set, cleared (`null`) or left alone (absent):
/// `#[serde(default, deserialize_with = "nullable")]` on an `Option<Option<T>>`.
pub fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}

/// An ISO 4217 code as money is stored with: three capital letters (`SAR`, `USD`).
pub fn check_currency(currency: &str) -> Result<(), crate::error::ApiError> {
    if currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(crate::error::ApiError::Invalid(format!(
            "currency is an ISO 4217 code such as SAR, not {currency:?}"
        )))
    }
}

/// A record's title, trimmed: 1 to 200 characters.
pub fn check_title(title: &str) -> Result<String, crate::error::ApiError> {
    let t = title.trim();
    if t.is_empty() || t.chars().count() > 200 {
        return Err(crate::error::ApiError::Invalid(
            "title has 1 to 200 characters".into(),
        ));
    }
    Ok(t.to_owned())
}
