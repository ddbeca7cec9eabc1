//! Disputes over commissions and gold-guarantee claims: `GET/POST /disputes`,
//! `GET/PATCH /disputes/{id}`. open → under_review → resolved (with a resolution, recorded with
//! who resolved it); every change in the audit log.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use runtime::UserId;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{Page, PageQuery};
use crate::app::AppState;
use crate::auth::{AuthUser, Role};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::repo::Cursor;
use crate::repo::audit;

/// Who raises disputes: the sales side, and affiliates (over their commissions).
pub const RAISERS: &[Role] = &[
    Role::Superadmin,
    Role::Admin,
    Role::SalesManager,
    Role::SalesRep,
    Role::Affiliate,
];
/// Who reviews and resolves them.
pub const RESOLVERS: &[Role] = &[Role::Superadmin, Role::Admin, Role::SalesManager];

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Dispute {
    pub id: uuid::Uuid,
    pub subject_kind: String,
    pub subject_id: uuid::Uuid,
    pub reason: String,
    pub status: String,
    pub resolution: Option<String>,
    pub raised_by_user_id: Option<UserId>,
    pub raised_by_role: String,
    pub resolved_by_user_id: Option<UserId>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub resolved_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

const COLUMNS: &str = "id, subject_kind, subject_id, reason, status, resolution, raised_by_user_id, \
                       raised_by_role, resolved_by_user_id, resolved_at, created_at, updated_at";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    Commission,
    GuaranteeClaim,
}

impl SubjectKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Commission => "commission",
            Self::GuaranteeClaim => "guarantee_claim",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisputeStatus {
    Open,
    UnderReview,
    Resolved,
}

impl DisputeStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::UnderReview => "under_review",
            Self::Resolved => "resolved",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub status: Option<DisputeStatus>,
    pub subject_kind: Option<SubjectKind>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<Dispute>>, ApiError> {
    auth.require(RESOLVERS)?;
    let limit = PageQuery::limit_of(q.limit)?;
    let after = super::parse_cursor(q.cursor.as_deref())?;
    let mut tx = auth.begin(&state.db).await?;
    let items = sqlx::query_as::<_, Dispute>(&format!(
        "SELECT {COLUMNS} FROM disputes WHERE tenant_id = wasit_current_tenant()
           AND ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR subject_kind = $2)
           AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
         ORDER BY created_at DESC, id DESC LIMIT $5"
    ))
    .bind(q.status.map(DisputeStatus::as_str))
    .bind(q.subject_kind.map(SubjectKind::as_str))
    .bind(after.map(|c| c.created_at))
    .bind(after.map(|c| c.id))
    .bind(limit + 1)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(Page::from_rows(items, limit, |d| {
        Cursor::new(d.created_at, d.id)
    })))
}

async fn find(
    tx: &mut runtime::db::TenantTx,
    id: uuid::Uuid,
    lock: bool,
) -> Result<Dispute, ApiError> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    sqlx::query_as::<_, Dispute>(&format!(
        "SELECT {COLUMNS} FROM disputes WHERE tenant_id = wasit_current_tenant() AND id = $1{lock}"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(ApiError::NotFound("dispute"))
}

fn dispute_id(raw: &str) -> Result<uuid::Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound("dispute"))
}

pub async fn get(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Dispute>, ApiError> {
    auth.require(RESOLVERS)?;
    let id = dispute_id(&id)?;
    let mut tx = auth.begin(&state.db).await?;
    let d = find(&mut tx, id, false).await?;
    tx.commit().await?;
    Ok(Json(d))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDispute {
    pub subject_kind: SubjectKind,
    pub subject_id: uuid::Uuid,
    pub reason: String,
}

pub async fn create(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(req): ApiJson<CreateDispute>,
) -> Result<(StatusCode, Json<Dispute>), ApiError> {
    auth.require(RAISERS)?;
    let reason = req.reason.trim();
    if reason.is_empty() || reason.chars().count() > 5000 {
        return Err(ApiError::Invalid("reason has 1 to 5,000 characters".into()));
    }
    let mut tx = auth.begin(&state.db).await?;
    // The subject must be this tenant's (row-level security hides everyone else's).
    let table = match req.subject_kind {
        SubjectKind::Commission => "commissions",
        SubjectKind::GuaranteeClaim => "guarantee_claims",
    };
    let exists: bool = sqlx::query_scalar(&format!(
        "SELECT EXISTS (SELECT 1 FROM {table} WHERE tenant_id = wasit_current_tenant() AND id = $1)"
    ))
    .bind(req.subject_id)
    .fetch_one(&mut *tx)
    .await?;
    if !exists {
        return Err(ApiError::Invalid(format!(
            "subject_id is not a {} of this tenant",
            req.subject_kind.as_str()
        )));
    }
    let d = sqlx::query_as::<_, Dispute>(&format!(
        "INSERT INTO disputes (tenant_id, subject_kind, subject_id, reason, raised_by_user_id, raised_by_role)
         VALUES (wasit_current_tenant(), $1, $2, $3, $4, $5) RETURNING {COLUMNS}"
    ))
    .bind(req.subject_kind.as_str())
    .bind(req.subject_id)
    .bind(reason)
    .bind(auth.user)
    .bind(auth.role.as_str())
    .fetch_one(&mut *tx)
    .await?;
    audit::record_new(&mut tx, &auth, "create", "dispute", d.id, &d).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(d)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateDispute {
    pub status: DisputeStatus,
    /// Required when resolving.
    pub resolution: Option<String>,
}

pub async fn update(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateDispute>,
) -> Result<Json<Dispute>, ApiError> {
    auth.require(RESOLVERS)?;
    let id = dispute_id(&id)?;
    let mut tx = auth.begin(&state.db).await?;
    let before = find(&mut tx, id, true).await?;
    let legal: &[&str] = match before.status.as_str() {
        "open" => &["under_review"],
        "under_review" => &["resolved"],
        _ => &[],
    };
    if !legal.contains(&req.status.as_str()) {
        return Err(ApiError::Conflict(if legal.is_empty() {
            "the dispute is resolved".to_owned()
        } else {
            format!(
                "an {} dispute can move to {}, not to {}",
                before.status,
                legal.join(" or "),
                req.status.as_str()
            )
        }));
    }
    let resolution = match (req.status, req.resolution.as_deref().map(str::trim)) {
        (DisputeStatus::Resolved, Some(r)) if !r.is_empty() && r.chars().count() <= 5000 => {
            Some(r.to_owned())
        }
        (DisputeStatus::Resolved, _) => {
            return Err(ApiError::Invalid(
                "resolving needs a resolution (1 to 5,000 characters)".into(),
            ));
        }
        (_, Some(_)) => {
            return Err(ApiError::Invalid(
                "a resolution is given only when resolving".into(),
            ));
        }
        (_, None) => None,
    };
    let resolved = req.status == DisputeStatus::Resolved;
    let d = sqlx::query_as::<_, Dispute>(&format!(
        "UPDATE disputes SET status = $2, resolution = coalesce($3, resolution),
                resolved_by_user_id = CASE WHEN $4 THEN $5 ELSE resolved_by_user_id END,
                resolved_at = CASE WHEN $4 THEN now() ELSE resolved_at END, updated_at = now()
         WHERE tenant_id = wasit_current_tenant() AND id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(req.status.as_str())
    .bind(resolution)
    .bind(resolved)
    .bind(auth.user)
    .fetch_one(&mut *tx)
    .await?;
    audit::record(&mut tx, &auth, "update", "dispute", d.id, &before, &d).await?;
    tx.commit().await?;
    Ok(Json(d))
}
