//! `GET /approvals`, `GET /approvals/{id}`, `POST /approvals/{id}/decision`: money-moving actions
//! agents asked for (a refund on a guarantee claim), decided by a person. Approving a refund
//! approves the claim for that amount, recorded with the approving user; the payout itself is
//! then `POST /guarantee-claims/{id}/refund`, as for any approved claim.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;

use super::{Page, PageQuery};
use crate::app::AppState;
use crate::auth::{AuthUser, Role};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::repo::Cursor;
use crate::repo::approvals::{self, Approval};
use crate::repo::{audit, guarantees};

/// Who reads and decides approvals: the people who may approve claims.
pub const ROLES: &[Role] = crate::routes::guarantees::REVIEWERS;

fn approval_id(raw: &str) -> Result<uuid::Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound("approval"))
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Rejected,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub status: Option<ApprovalStatus>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<Approval>>, ApiError> {
    auth.require(ROLES)?;
    let limit = PageQuery::limit_of(q.limit)?;
    let after = super::parse_cursor(q.cursor.as_deref())?;
    let status = q.status.map(|s| match s {
        ApprovalStatus::Pending => "pending",
        ApprovalStatus::Approved => "approved",
        ApprovalStatus::Rejected => "rejected",
    });
    let mut tx = auth.begin(&state.db).await?;
    let items = approvals::list(&mut tx, status, after, limit + 1).await?;
    tx.commit().await?;
    Ok(Json(Page::from_rows(items, limit, |a| {
        Cursor::new(a.requested_at, a.id)
    })))
}

pub async fn get(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Approval>, ApiError> {
    auth.require(ROLES)?;
    let id = approval_id(&id)?;
    let mut tx = auth.begin(&state.db).await?;
    let approval = approvals::find(&mut tx, id, false).await?;
    tx.commit().await?;
    Ok(Json(approval))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub approve: bool,
    pub note: Option<String>,
}

pub async fn decide(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<Decision>,
) -> Result<Json<Approval>, ApiError> {
    auth.require(ROLES)?;
    let id = approval_id(&id)?;
    if req.note.as_ref().is_some_and(|n| n.chars().count() > 2000) {
        return Err(ApiError::Invalid(
            "note has at most 2,000 characters".into(),
        ));
    }
    // A decision names a person: a user's token, not an operator's.
    let user = auth.user.ok_or_else(|| {
        ApiError::Invalid("a decision is recorded with a user: use a user's token".into())
    })?;
    let mut tx = auth.begin(&state.db).await?;
    let before = approvals::find(&mut tx, id, true).await?;
    if before.status != "pending" {
        return Err(ApiError::Conflict(format!(
            "the approval is {} already",
            before.status
        )));
    }
    if req.approve && before.subject_type == "guarantee_claim" {
        // The refund approves the claim for that amount.
        let claim_before = guarantees::find(&mut tx, before.subject_id, true).await?;
        if claim_before.status != "under_review" {
            return Err(ApiError::Conflict(format!(
                "the claim is {}: only a claim under review can be approved",
                claim_before.status
            )));
        }
        let amount = before.amount_minor.unwrap_or(0);
        if amount > claim_before.claimed_minor {
            return Err(ApiError::Conflict("the refund exceeds the claim".into()));
        }
        let mut claim = claim_before.clone();
        claim.status = "approved".into();
        claim.approved_minor = Some(amount);
        claim.approved_by_user_id = Some(user);
        claim.approved_at = Some(time::OffsetDateTime::now_utc());
        claim.decision_note = req.note.clone().or(claim.decision_note);
        let claim = guarantees::save(&mut tx, &claim).await?;
        audit::record(
            &mut tx,
            &auth,
            "update",
            "guarantee_claim",
            claim.id,
            &claim_before,
            &claim,
        )
        .await?;
    }
    if req.approve && before.subject_type == "commission" {
        // A commission over its rule's threshold: approving the request approves the line.
        let line =
            crate::repo::commissions::set_status(&mut tx, before.subject_id, "approved").await?;
        audit::record_new(&mut tx, &auth, "approve", "commission", line.id, &line).await?;
    }
    let after = approvals::decide(&mut tx, id, req.approve, user, req.note.as_deref()).await?;
    audit::record(&mut tx, &auth, "decide", "approval", id, &before, &after).await?;
    tx.commit().await?;
    Ok(Json(after))
}
