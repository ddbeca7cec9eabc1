//! Proposals: `GET/POST /proposals`, `GET/PATCH /proposals/{id}`. draft → sent → accepted |
//! declined (409 otherwise); once sent, the content is what the customer saw and does not change.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::{Page, PageQuery};
use crate::app::AppState;
use crate::auth::{AuthUser, Role};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::repo::Cursor;
use crate::repo::audit;
use crate::repo::proposals::{self, NewProposal, Proposal, ProposalStatus};

/// Who may read and change proposals.
pub const ROLES: &[Role] = Role::SALES;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub deal_id: Option<uuid::Uuid>,
    pub status: Option<ProposalStatus>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<Proposal>>, ApiError> {
    auth.require(ROLES)?;
    let limit = PageQuery::limit_of(q.limit)?;
    let after = super::parse_cursor(q.cursor.as_deref())?;
    let mut tx = auth.begin(&state.db).await?;
    let items = proposals::list(&mut tx, q.deal_id, q.status, after, limit + 1).await?;
    tx.commit().await?;
    Ok(Json(Page::from_rows(items, limit, |p| {
        Cursor::new(p.created_at, p.id)
    })))
}

fn proposal_id(raw: &str) -> Result<uuid::Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound("proposal"))
}

pub async fn get(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Proposal>, ApiError> {
    auth.require(ROLES)?;
    let id = proposal_id(&id)?;
    let mut tx = auth.begin(&state.db).await?;
    let proposal = proposals::find(&mut tx, id, false).await?;
    tx.commit().await?;
    Ok(Json(proposal))
}

fn check(title: &str, content: &str, money: (Option<i64>, Option<&str>)) -> Result<(), ApiError> {
    if title.trim().is_empty() || title.chars().count() > 200 {
        return Err(ApiError::Invalid("title has 1 to 200 characters".into()));
    }
    if content.len() > 100_000 {
        return Err(ApiError::Invalid(
            "content has at most 100,000 bytes".into(),
        ));
    }
    match money {
        (None, None) => Ok(()),
        (Some(a), Some(c)) if a >= 0 && super::check_currency(c).is_ok() => Ok(()),
        _ => Err(ApiError::Invalid(
            "amount_minor (whole minor units, at least 0) and currency (ISO 4217) come together"
                .into(),
        )),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateProposal {
    pub deal_id: uuid::Uuid,
    pub title: String,
    pub content: String,
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
}

pub async fn create(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(req): ApiJson<CreateProposal>,
) -> Result<(StatusCode, Json<Proposal>), ApiError> {
    auth.require(ROLES)?;
    check(
        &req.title,
        &req.content,
        (req.amount_minor, req.currency.as_deref()),
    )?;
    let new = NewProposal {
        deal_id: req.deal_id,
        title: req.title.trim().to_owned(),
        content: req.content,
        amount_minor: req.amount_minor,
        currency: req.currency,
        author_user_id: auth.user,
        author_agent: None,
        discount_bps: None,
    };
    let mut tx = auth.begin(&state.db).await?;
    let proposal = proposals::create(&mut tx, &new).await?;
    audit::record_new(&mut tx, &auth, "create", "proposal", proposal.id, &proposal).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(proposal)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateProposal {
    pub title: Option<String>,
    pub content: Option<String>,
    #[serde(default, deserialize_with = "super::nullable")]
    pub amount_minor: Option<Option<i64>>,
    #[serde(default, deserialize_with = "super::nullable")]
    pub currency: Option<Option<String>>,
    pub status: Option<ProposalStatus>,
}

pub async fn update(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateProposal>,
) -> Result<Json<Proposal>, ApiError> {
    auth.require(ROLES)?;
    let id = proposal_id(&id)?;
    let mut tx = auth.begin(&state.db).await?;
    let before = proposals::find(&mut tx, id, true).await?;
    let current = ProposalStatus::parse(&before.status).ok_or_else(|| {
        ApiError::internal(anyhow::anyhow!("unknown proposal status in database"))
    })?;
    let edits = req.title.is_some()
        || req.content.is_some()
        || req.amount_minor.is_some()
        || req.currency.is_some();
    if edits && current != ProposalStatus::Draft {
        return Err(ApiError::Conflict(format!(
            "a {} proposal's content does not change; write a new draft",
            current.as_str()
        )));
    }
    let mut proposal = before.clone();
    if let Some(t) = req.title {
        proposal.title = t.trim().to_owned();
    }
    if let Some(c) = req.content {
        proposal.content = c;
    }
    if let Some(a) = req.amount_minor {
        proposal.amount_minor = a;
    }
    if let Some(c) = req.currency {
        proposal.currency = c;
    }
    check(
        &proposal.title,
        &proposal.content,
        (proposal.amount_minor, proposal.currency.as_deref()),
    )?;
    if let Some(next) = req.status
        && next != current
    {
        if !current.next().contains(&next) {
            let legal: Vec<&str> = current.next().iter().map(|s| s.as_str()).collect();
            return Err(ApiError::Conflict(if legal.is_empty() {
                format!("a {} proposal is final", current.as_str())
            } else {
                format!(
                    "a {} proposal can move to {}, not to {}",
                    current.as_str(),
                    legal.join(" or "),
                    next.as_str()
                )
            }));
        }
        proposal.status = next.as_str().to_owned();
    }
    let saved = proposals::save(&mut tx, &proposal).await?;
    audit::record(
        &mut tx, &auth, "update", "proposal", saved.id, &before, &saved,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(saved))
}
