//! The caller's notifications (`GET /notifications`, `PATCH /notifications/{id}`) and the
//! tenant's audit log (`GET /audit-log`).

use axum::Json;
use axum::extract::{Path, State};
use runtime::UserId;
use serde::Deserialize;

use super::{Page, PageQuery};
use crate::app::AppState;
use crate::auth::{AuthUser, Role};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::repo::Cursor;
use crate::repo::notifications::{self, AuditEntry, AuditFilter, Notification};

/// Who reads the audit log.
pub const AUDITORS: &[Role] = &[Role::Superadmin, Role::Admin, Role::SalesManager];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    pub unread: bool,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// Every role has notifications; a token that is not a user's (a CLI token) has none.
pub async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<Notification>>, ApiError> {
    auth.require(Role::ALL)?;
    let limit = PageQuery::limit_of(q.limit)?;
    let after = super::parse_cursor(q.cursor.as_deref())?;
    let Some(user) = auth.user else {
        return Ok(Json(Page {
            items: Vec::new(),
            next_cursor: None,
        }));
    };
    let mut tx = auth.begin(&state.db).await?;
    let items = notifications::list(&mut tx, user, q.unread, after, limit + 1).await?;
    tx.commit().await?;
    Ok(Json(Page::from_rows(items, limit, |n| {
        Cursor::new(n.created_at, n.id)
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mark {
    pub read: bool,
}

pub async fn mark(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<Mark>,
) -> Result<Json<Notification>, ApiError> {
    auth.require(Role::ALL)?;
    let id: uuid::Uuid = id.parse().map_err(|_| ApiError::NotFound("notification"))?;
    let user = auth.user.ok_or(ApiError::NotFound("notification"))?;
    let mut tx = auth.begin(&state.db).await?;
    let n = notifications::mark(&mut tx, user, id, req.read).await?;
    tx.commit().await?;
    Ok(Json(n))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub entity: Option<String>,
    pub entity_id: Option<uuid::Uuid>,
    pub actor_user_id: Option<UserId>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

pub async fn audit_log(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<Page<AuditEntry>>, ApiError> {
    auth.require(AUDITORS)?;
    let limit = PageQuery::limit_of(q.limit)?;
    let after = super::parse_cursor(q.cursor.as_deref())?;
    let filter = AuditFilter {
        entity: q.entity,
        entity_id: q.entity_id,
        actor_user_id: q.actor_user_id,
    };
    let mut tx = auth.begin(&state.db).await?;
    let items = notifications::audit_log(&mut tx, &filter, after, limit + 1).await?;
    tx.commit().await?;
    Ok(Json(Page::from_rows(items, limit, |e| {
        Cursor::new(e.at, e.id)
    })))
}
