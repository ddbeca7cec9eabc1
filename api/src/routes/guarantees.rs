//! The gold guarantee: `GET/POST /guarantee-claims`, `GET/PATCH /guarantee-claims/{id}`,
//! `POST /guarantee-claims/{id}/evidence`, `POST /guarantee-claims/{id}/refund`.
//!
//! Anyone on the sales side records a claim and its evidence; managers review, approve (with an
//! approved amount, recorded with who approved) or reject, and refund what was approved, once.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use runtime::ContactId;
use serde::Deserialize;
use serde_json::json;

use super::{Page, PageQuery};
use crate::app::AppState;
use crate::auth::{AuthUser, Role};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::repo::Cursor;
use crate::repo::audit;
use crate::repo::guarantees::{self, Claim, Refund};

/// Who records and reads claims.
pub const ROLES: &[Role] = Role::SALES;
/// Who reviews, approves, rejects and refunds.
pub const REVIEWERS: &[Role] = &[Role::Superadmin, Role::Admin, Role::SalesManager];

fn claim_id(raw: &str) -> Result<uuid::Uuid, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::NotFound("guarantee claim"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimStatus {
    Submitted,
    UnderReview,
    Approved,
    Rejected,
    Refunded,
}

impl ClaimStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Submitted => "submitted",
            Self::UnderReview => "under_review",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Refunded => "refunded",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub status: Option<ClaimStatus>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<Claim>>, ApiError> {
    auth.require(ROLES)?;
    let limit = PageQuery::limit_of(q.limit)?;
    let after = super::parse_cursor(q.cursor.as_deref())?;
    let mut tx = auth.begin(&state.db).await?;
    let status = q.status.map(ClaimStatus::as_str);
    let items = guarantees::list(&mut tx, status, after, limit + 1).await?;
    tx.commit().await?;
    Ok(Json(Page::from_rows(items, limit, |c| {
        Cursor::new(c.created_at, c.id)
    })))
}

pub async fn get(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Claim>, ApiError> {
    auth.require(ROLES)?;
    let id = claim_id(&id)?;
    let mut tx = auth.begin(&state.db).await?;
    let claim = guarantees::find(&mut tx, id, false).await?;
    tx.commit().await?;
    Ok(Json(claim))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateClaim {
    pub contact_id: Option<ContactId>,
    pub deal_id: Option<uuid::Uuid>,
    pub description: String,
    pub claimed_minor: i64,
    pub currency: String,
}

pub async fn create(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(req): ApiJson<CreateClaim>,
) -> Result<(StatusCode, Json<Claim>), ApiError> {
    auth.require(ROLES)?;
    let description = req.description.trim();
    if description.is_empty() || description.chars().count() > 5000 {
        return Err(ApiError::Invalid(
            "description has 1 to 5,000 characters".into(),
        ));
    }
    if req.claimed_minor < 0 {
        return Err(ApiError::Invalid("claimed_minor is at least 0".into()));
    }
    super::check_currency(&req.currency)?;
    let mut tx = auth.begin(&state.db).await?;
    let claim = guarantees::create(
        &mut tx,
        req.contact_id,
        req.deal_id,
        description,
        req.claimed_minor,
        &req.currency,
    )
    .await?;
    audit::record_new(
        &mut tx,
        &auth,
        "create",
        "guarantee_claim",
        claim.id,
        &claim,
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(claim)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Review {
    pub status: ClaimStatus,
    /// Required when approving: how much of the claim is granted.
    pub approved_minor: Option<i64>,
    pub decision_note: Option<String>,
}

pub async fn review(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<Review>,
) -> Result<Json<Claim>, ApiError> {
    auth.require(REVIEWERS)?;
    let id = claim_id(&id)?;
    let mut tx = auth.begin(&state.db).await?;
    let before = guarantees::find(&mut tx, id, true).await?;
    let legal: &[&str] = match before.status.as_str() {
        "submitted" => &["under_review"],
        "under_review" => &["approved", "rejected"],
        _ => &[],
    };
    let next = req.status.as_str();
    if !legal.contains(&next) {
        return Err(ApiError::Conflict(if legal.is_empty() {
            format!(
                "a {} claim is decided (refunds go through /refund)",
                before.status
            )
        } else {
            format!(
                "a {} claim can move to {}, not to {next}",
                before.status,
                legal.join(" or ")
            )
        }));
    }
    let mut claim = before.clone();
    claim.status = next.to_owned();
    if let Some(note) = req.decision_note {
        if note.chars().count() > 2000 {
            return Err(ApiError::Invalid(
                "decision_note has at most 2,000 characters".into(),
            ));
        }
        claim.decision_note = Some(note);
    }
    if req.status == ClaimStatus::Approved {
        // An approval names a person: a user's token, not an operator's.
        let approver = auth.user.ok_or_else(|| {
            ApiError::Invalid("an approval is recorded with a user: use a user's token".into())
        })?;
        let amount = req
            .approved_minor
            .ok_or_else(|| ApiError::Invalid("approving needs approved_minor".into()))?;
        if !(0..=claim.claimed_minor).contains(&amount) {
            return Err(ApiError::Invalid(format!(
                "approved_minor is 0 to the claimed {}",
                claim.claimed_minor
            )));
        }
        claim.approved_minor = Some(amount);
        claim.approved_by_user_id = Some(approver);
        claim.approved_at = Some(time::OffsetDateTime::now_utc());
    } else if req.approved_minor.is_some() {
        return Err(ApiError::Invalid(
            "approved_minor is given only when approving".into(),
        ));
    }
    let saved = guarantees::save(&mut tx, &claim).await?;
    audit::record(
        &mut tx,
        &auth,
        "update",
        "guarantee_claim",
        saved.id,
        &before,
        &saved,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(saved))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    pub file_name: String,
    pub content_type: String,
    pub size_bytes: u64,
    /// Hex SHA-256 of the file, so the stored file can be checked against what was reviewed.
    pub sha256: String,
}

pub async fn add_evidence(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<Evidence>,
) -> Result<(StatusCode, Json<Claim>), ApiError> {
    auth.require(ROLES)?;
    let id = claim_id(&id)?;
    if req.file_name.trim().is_empty() || req.file_name.chars().count() > 255 {
        return Err(ApiError::Invalid(
            "file_name has 1 to 255 characters".into(),
        ));
    }
    if !req.content_type.contains('/') || req.content_type.len() > 100 {
        return Err(ApiError::Invalid(
            "content_type is a media type such as image/jpeg".into(),
        ));
    }
    if req.sha256.len() != 64 || !req.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::Invalid("sha256 is 64 hex digits".into()));
    }
    let mut tx = auth.begin(&state.db).await?;
    let before = guarantees::find(&mut tx, id, true).await?;
    if !matches!(before.status.as_str(), "submitted" | "under_review") {
        return Err(ApiError::Conflict(format!(
            "evidence is added before the decision; the claim is {}",
            before.status
        )));
    }
    let mut claim = before.clone();
    if let Some(items) = claim.evidence.as_array_mut() {
        items.push(json!({
            "file_name": req.file_name.trim(),
            "content_type": req.content_type,
            "size_bytes": req.size_bytes,
            "sha256": req.sha256.to_lowercase(),
            "added_by_role": auth.role.as_str(),
            "added_at": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).map_err(ApiError::internal)?,
        }));
    }
    let saved = guarantees::save(&mut tx, &claim).await?;
    audit::record(
        &mut tx,
        &auth,
        "add_evidence",
        "guarantee_claim",
        saved.id,
        &before,
        &saved,
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(saved)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    pub amount_minor: i64,
}

pub async fn refund(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RefundRequest>,
) -> Result<(StatusCode, Json<Refund>), ApiError> {
    auth.require(REVIEWERS)?;
    let id = claim_id(&id)?;
    let refunder = auth.user.ok_or_else(|| {
        ApiError::Invalid("a refund is recorded with a user: use a user's token".into())
    })?;
    let mut tx = auth.begin(&state.db).await?;
    let claim = guarantees::find(&mut tx, id, true).await?;
    if claim.status != "approved" {
        return Err(ApiError::Conflict(format!(
            "only an approved claim is refunded; this one is {}",
            claim.status
        )));
    }
    let approved = claim.approved_minor.unwrap_or(0);
    if req.amount_minor <= 0 || req.amount_minor > approved {
        return Err(ApiError::Invalid(format!(
            "amount_minor is more than 0 and at most the approved {approved}"
        )));
    }
    let refund = guarantees::refund(&mut tx, &claim, req.amount_minor, refunder).await?;
    audit::record_new(
        &mut tx,
        &auth,
        "refund",
        "guarantee_claim",
        claim.id,
        &refund,
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(refund)))
}
