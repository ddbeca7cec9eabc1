//! Leads: `GET/POST /leads`, `GET/PATCH /leads/{id}`. Status moves are checked here (409 for an
//! illegal move, naming the legal ones); every change is written to the audit log in the same
//! transaction.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use runtime::{ContactId, LeadId, UserId};
use serde::Deserialize;
use serde_json::Value;

use super::{Page, PageQuery};
use crate::app::AppState;
use crate::auth::{AuthUser, Role};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::repo::audit;
use crate::repo::leads::{
    self, Cursor, Filter, Lead, LeadSource, LeadStatus, NewLead, ScoreReason,
};

/// Who may read and change leads.
pub const ROLES: &[Role] = Role::SALES;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub status: Option<LeadStatus>,
    pub owner_user_id: Option<UserId>,
    pub source: Option<LeadSource>,
    pub contact_id: Option<ContactId>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<Lead>>, ApiError> {
    auth.require(ROLES)?;
    let limit = PageQuery::limit_of(q.limit)?;
    let after = super::parse_cursor(q.cursor.as_deref())?;
    let filter = Filter {
        status: q.status,
        owner_user_id: q.owner_user_id,
        source: q.source,
        contact_id: q.contact_id,
    };
    let mut tx = auth.begin(&state.db).await?;
    let items = leads::list(&mut tx, &filter, after, limit + 1).await?;
    tx.commit().await?;
    Ok(Json(Page::from_rows(items, limit, |x| {
        Cursor::new(x.created_at, x.id.0)
    })))
}

/// An id from the path; anything that is not one is simply not found.
fn lead_id(raw: &str) -> Result<LeadId, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound("lead"))
}

pub async fn get(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Lead>, ApiError> {
    auth.require(ROLES)?;
    let id = lead_id(&id)?;
    let mut tx = auth.begin(&state.db).await?;
    let lead = leads::find(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(lead))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateLead {
    pub contact_id: Option<ContactId>,
    pub source: Option<LeadSource>,
    pub score: Option<i16>,
    #[serde(default)]
    pub score_reasons: Vec<ScoreReason>,
    pub qualification: Option<Value>,
    pub sector: Option<String>,
    pub territory: Option<String>,
    pub owner_user_id: Option<UserId>,
    /// An active affiliate's referral code: the lead is attributed to them.
    pub referral_code: Option<String>,
}

pub async fn create(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(req): ApiJson<CreateLead>,
) -> Result<(StatusCode, Json<Lead>), ApiError> {
    auth.require(ROLES)?;
    check_score(req.score)?;
    check_qualification(req.qualification.as_ref())?;
    check_label("sector", req.sector.as_deref())?;
    check_label("territory", req.territory.as_deref())?;
    let new = NewLead {
        contact_id: req.contact_id,
        source: req.source,
        score: req.score,
        score_reasons: req.score_reasons,
        qualification: req.qualification,
        sector: req.sector,
        territory: req.territory,
        owner_user_id: req.owner_user_id,
    };
    let mut tx = auth.begin(&state.db).await?;
    let affiliate =
        match req.referral_code.as_deref() {
            Some(code) => Some(leads::affiliate_by_code(&mut tx, code).await?.ok_or_else(
                || {
                    ApiError::Invalid(format!(
                        "{code:?} is not the referral code of an active affiliate"
                    ))
                },
            )?),
            None => None,
        };
    let mut lead = leads::create(&mut tx, &new).await?;
    if let Some(affiliate) = affiliate {
        leads::set_affiliate(&mut tx, lead.id, affiliate).await?;
        lead.affiliate_id = Some(affiliate);
    }
    audit::record_new(&mut tx, &auth, "create", "lead", lead.id.0, &lead).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(lead)))
}

/// A field that may be set, cleared (`null`) or left alone (absent).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateLead {
    pub status: Option<LeadStatus>,
    #[serde(default, deserialize_with = "super::nullable")]
    pub score: Option<Option<i16>>,
    pub score_reasons: Option<Vec<ScoreReason>>,
    pub qualification: Option<Value>,
    #[serde(default, deserialize_with = "super::nullable")]
    pub sector: Option<Option<String>>,
    #[serde(default, deserialize_with = "super::nullable")]
    pub territory: Option<Option<String>>,
    #[serde(default, deserialize_with = "super::nullable")]
    pub owner_user_id: Option<Option<UserId>>,
    #[serde(default, deserialize_with = "super::nullable")]
    pub contact_id: Option<Option<ContactId>>,
    /// Required when the status moves to `disqualified`.
    pub disqualified_reason: Option<String>,
}

pub async fn update(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateLead>,
) -> Result<Json<Lead>, ApiError> {
    auth.require(ROLES)?;
    let id = lead_id(&id)?;
    if let Some(score) = req.score {
        check_score(score)?;
    }
    check_qualification(req.qualification.as_ref())?;
    check_label("sector", req.sector.clone().flatten().as_deref())?;
    check_label("territory", req.territory.clone().flatten().as_deref())?;
    let mut tx = auth.begin(&state.db).await?;
    let before = leads::find_for_update(&mut tx, id).await?;
    let mut lead = before.clone();
    if let Some(status) = req.status
        && status != lead.status
    {
        if !lead.status.next().contains(&status) {
            let legal: Vec<&str> = lead.status.next().iter().map(|s| s.as_str()).collect();
            return Err(ApiError::Conflict(if legal.is_empty() {
                format!(
                    "a {} lead is final and cannot move to {}",
                    lead.status.as_str(),
                    status.as_str()
                )
            } else {
                format!(
                    "a {} lead can move to {}, not to {}",
                    lead.status.as_str(),
                    legal.join(" or "),
                    status.as_str()
                )
            }));
        }
        if status == LeadStatus::Disqualified {
            let reason = req
                .disqualified_reason
                .as_deref()
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .ok_or_else(|| {
                    ApiError::Invalid("disqualifying a lead needs a disqualified_reason".into())
                })?;
            if reason.chars().count() > 1000 {
                return Err(ApiError::Invalid(
                    "disqualified_reason has at most 1000 characters".into(),
                ));
            }
            lead.disqualified_reason = Some(reason.to_owned());
        }
        lead.status = status;
    } else if req.disqualified_reason.is_some() {
        return Err(ApiError::Invalid(
            "disqualified_reason is only given when the status moves to disqualified".into(),
        ));
    }
    if let Some(score) = req.score {
        lead.score = score;
    }
    if let Some(reasons) = req.score_reasons {
        lead.score_reasons = reasons;
    }
    if let Some(q) = req.qualification {
        lead.qualification = q;
    }
    if let Some(sector) = req.sector {
        lead.sector = sector;
    }
    if let Some(territory) = req.territory {
        lead.territory = territory;
    }
    if let Some(owner) = req.owner_user_id {
        lead.owner_user_id = owner;
    }
    if let Some(contact) = req.contact_id {
        lead.contact_id = contact;
    }
    let saved = leads::save(&mut tx, &lead).await?;
    audit::record(
        &mut tx, &auth, "update", "lead", saved.id.0, &before, &saved,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(saved))
}

fn check_score(score: Option<i16>) -> Result<(), ApiError> {
    match score {
        Some(s) if !(0..=100).contains(&s) => Err(ApiError::Invalid(format!(
            "score is between 0 and 100, not {s}"
        ))),
        _ => Ok(()),
    }
}

fn check_qualification(q: Option<&Value>) -> Result<(), ApiError> {
    match q {
        Some(v) if !v.is_object() => {
            Err(ApiError::Invalid("qualification is a JSON object".into()))
        }
        _ => Ok(()),
    }
}

fn check_label(field: &str, value: Option<&str>) -> Result<(), ApiError> {
    match value {
        Some(v) if v.trim().is_empty() || v.chars().count() > 100 => Err(ApiError::Invalid(
            format!("{field} has 1 to 100 characters"),
        )),
        _ => Ok(()),
    }
}

/// `POST /leads/{id}/assign`: gives the lead to the matching rep with the fewest open leads.
pub async fn assign(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Lead>, ApiError> {
    auth.require(ROLES)?;
    let id = lead_id(&id)?;
    let mut tx = auth.begin(&state.db).await?;
    let before = leads::find(&mut tx, id).await?;
    let lead = leads::assign(&mut tx, id).await?.ok_or_else(|| {
        ApiError::Conflict("no sales rep takes leads of this sector and territory".into())
    })?;
    audit::record(&mut tx, &auth, "assign", "lead", lead.id.0, &before, &lead).await?;
    tx.commit().await?;
    Ok(Json(lead))
}

#[derive(Debug, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SalesProfile {
    #[serde(default)]
    pub sectors: Vec<String>,
    #[serde(default)]
    pub territories: Vec<String>,
    #[serde(default = "yes")]
    pub accepts_leads: bool,
    /// The largest discount, in basis points, an agent may put on this rep's deals without a
    /// manager's approval.
    #[serde(default = "default_max_discount")]
    pub max_discount_bps: i32,
}

fn yes() -> bool {
    true
}

/// 5 %: what a rep without a profile may give.
pub const DEFAULT_MAX_DISCOUNT_BPS: i32 = 500;

fn default_max_discount() -> i32 {
    DEFAULT_MAX_DISCOUNT_BPS
}

/// `GET /users/{id}/sales-profile`: the sectors and territories a rep takes (empty: any).
pub async fn get_profile(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<SalesProfile>, ApiError> {
    auth.require(ROLES)?;
    let user: UserId = id.parse().map_err(|_| ApiError::NotFound("user"))?;
    let mut tx = auth.begin(&state.db).await?;
    crate::repo::users::find(&mut tx, user).await?;
    let row: Option<(Vec<String>, Vec<String>, bool, i32)> = sqlx::query_as(
        "SELECT sectors, territories, accepts_leads, max_discount_bps FROM rep_profiles
         WHERE tenant_id = wasit_current_tenant() AND user_id = $1",
    )
    .bind(user)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    let (sectors, territories, accepts_leads, max_discount_bps) =
        row.unwrap_or((Vec::new(), Vec::new(), true, DEFAULT_MAX_DISCOUNT_BPS));
    Ok(Json(SalesProfile {
        sectors,
        territories,
        accepts_leads,
        max_discount_bps,
    }))
}

/// `PUT /users/{id}/sales-profile` (admins, managers).
pub async fn set_profile(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<SalesProfile>,
) -> Result<Json<SalesProfile>, ApiError> {
    auth.require(crate::routes::meetings::HOURS_EDITORS)?;
    let user: UserId = id.parse().map_err(|_| ApiError::NotFound("user"))?;
    for label in req.sectors.iter().chain(&req.territories) {
        check_label("sectors and territories", Some(label))?;
    }
    if !(0..=10_000).contains(&req.max_discount_bps) {
        return Err(ApiError::Invalid(
            "max_discount_bps is 0 to 10,000 (0 % to 100 %)".into(),
        ));
    }
    let mut tx = auth.begin(&state.db).await?;
    crate::repo::users::find(&mut tx, user).await?;
    sqlx::query(
        "INSERT INTO rep_profiles (tenant_id, user_id, sectors, territories, accepts_leads, max_discount_bps)
         VALUES (wasit_current_tenant(), $1, $2, $3, $4, $5)
         ON CONFLICT (tenant_id, user_id) DO UPDATE
         SET sectors = EXCLUDED.sectors, territories = EXCLUDED.territories,
             accepts_leads = EXCLUDED.accepts_leads, max_discount_bps = EXCLUDED.max_discount_bps,
             updated_at = now()",
    )
    .bind(user)
    .bind(&req.sectors)
    .bind(&req.territories)
    .bind(req.accepts_leads)
    .bind(req.max_discount_bps)
    .execute(&mut *tx)
    .await?;
    audit::record_new(&mut tx, &auth, "update", "sales_profile", user.0, &req).await?;
    tx.commit().await?;
    Ok(Json(req))
}
