//! Affiliates and commissions: `GET/POST /affiliates`, `GET/PATCH /affiliates/{id}`,
//! `GET/POST /commission-rules`, `GET /commissions`, `GET /commissions/payouts`.
//!
//! An affiliate moves applied → approved → onboarding → active ⇄ suspended (or applied →
//! rejected); it becomes active only when every onboarding step is done.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use runtime::{ContactId, UserId};
use serde::Deserialize;
use time::Date;

use super::deals::Items;
use super::{Page, PageQuery};
use crate::app::AppState;
use crate::auth::{AuthUser, Role};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::repo::Cursor;
use crate::repo::audit;
use crate::repo::commissions::{self, Affiliate, Commission, Payout, Rule, Tier};

/// Who manages affiliates and commissions.
pub const ROLES: &[Role] = &[Role::Superadmin, Role::Admin, Role::SalesManager];

fn affiliate_id(raw: &str) -> Result<uuid::Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound("affiliate"))
}

pub async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Page<Affiliate>>, ApiError> {
    auth.require(ROLES)?;
    let limit = q.limit()?;
    let after = super::parse_cursor(q.cursor.as_deref())?;
    let mut tx = auth.begin(&state.db).await?;
    let items = commissions::list_affiliates(&mut tx, after, limit + 1).await?;
    tx.commit().await?;
    Ok(Json(Page::from_rows(items, limit, |a| {
        Cursor::new(a.created_at, a.id)
    })))
}

pub async fn get(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Affiliate>, ApiError> {
    auth.require(ROLES)?;
    let id = affiliate_id(&id)?;
    let mut tx = auth.begin(&state.db).await?;
    let a = commissions::find_affiliate(&mut tx, id, false).await?;
    tx.commit().await?;
    Ok(Json(a))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAffiliate {
    pub display_name: String,
    pub user_id: Option<UserId>,
    pub contact_id: Option<ContactId>,
    /// 4–16 of A–Z and 0–9; generated when absent.
    pub referral_code: Option<String>,
}

fn generated_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    // A v4 UUID's bytes come from the operating system's random source.
    uuid::Uuid::new_v4().as_bytes()[..8]
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

pub async fn create(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(req): ApiJson<CreateAffiliate>,
) -> Result<(StatusCode, Json<Affiliate>), ApiError> {
    auth.require(ROLES)?;
    let name = req.display_name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::Invalid(
            "display_name has 1 to 200 characters".into(),
        ));
    }
    let code = match req.referral_code {
        Some(c) => {
            let c = c.trim().to_uppercase();
            if !(4..=16).contains(&c.len())
                || !c
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            {
                return Err(ApiError::Invalid(
                    "referral_code has 4 to 16 letters A–Z and digits".into(),
                ));
            }
            c
        }
        None => generated_code(),
    };
    let mut tx = auth.begin(&state.db).await?;
    let a =
        commissions::create_affiliate(&mut tx, name, req.user_id, req.contact_id, &code).await?;
    audit::record_new(&mut tx, &auth, "create", "affiliate", a.id, &a).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(a)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AffiliateStatus {
    Applied,
    Approved,
    Rejected,
    Onboarding,
    Active,
    Suspended,
}

impl AffiliateStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Onboarding => "onboarding",
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }

    /// Legal moves from `from`.
    fn legal(from: &str) -> &'static [&'static str] {
        match from {
            "applied" => &["approved", "rejected"],
            "approved" => &["onboarding"],
            "onboarding" => &["active"],
            "active" => &["suspended"],
            "suspended" => &["active"],
            _ => &[],
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateAffiliate {
    pub display_name: Option<String>,
    pub status: Option<AffiliateStatus>,
    /// Onboarding steps to mark done, by name.
    #[serde(default)]
    pub steps_done: Vec<String>,
}

pub async fn update(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateAffiliate>,
) -> Result<Json<Affiliate>, ApiError> {
    auth.require(ROLES)?;
    let id = affiliate_id(&id)?;
    let mut tx = auth.begin(&state.db).await?;
    let before = commissions::find_affiliate(&mut tx, id, true).await?;
    let mut a = before.clone();
    if let Some(name) = &req.display_name {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(ApiError::Invalid(
                "display_name has 1 to 200 characters".into(),
            ));
        }
        a.display_name = name.to_owned();
    }
    if !req.steps_done.is_empty() {
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(ApiError::internal)?;
        let steps = a.onboarding.as_array_mut().ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!(
                "onboarding is not an array in the database"
            ))
        })?;
        for name in &req.steps_done {
            let step = steps
                .iter_mut()
                .find(|s| s["step"] == name.as_str())
                .ok_or_else(|| {
                    ApiError::Invalid(format!("there is no onboarding step {name:?}"))
                })?;
            if step["done_at"].is_null() {
                step["done_at"] = serde_json::Value::String(now.clone());
            }
        }
    }
    if let Some(next) = req.status
        && next.as_str() != a.status
    {
        let legal = AffiliateStatus::legal(&a.status);
        if !legal.contains(&next.as_str()) {
            return Err(ApiError::Conflict(format!(
                "an {} affiliate can move to {}, not to {}",
                a.status,
                if legal.is_empty() {
                    "nothing".to_owned()
                } else {
                    legal.join(" or ")
                },
                next.as_str()
            )));
        }
        let undone = a.undone_steps();
        if next == AffiliateStatus::Active && a.status == "onboarding" && !undone.is_empty() {
            return Err(ApiError::Conflict(format!(
                "onboarding is not finished: {}",
                undone.join(", ")
            )));
        }
        a.status = next.as_str().to_owned();
    }
    let saved = commissions::save_affiliate(&mut tx, &a).await?;
    audit::record(
        &mut tx,
        &auth,
        "update",
        "affiliate",
        saved.id,
        &before,
        &saved,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(saved))
}

pub async fn rules(
    State(state): State<AppState>,
    auth: AuthUser,
) -> Result<Json<Items<Rule>>, ApiError> {
    auth.require(ROLES)?;
    let mut tx = auth.begin(&state.db).await?;
    let items = commissions::list_rules(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(Items { items }))
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Beneficiary {
    Affiliate,
    Owner,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRule {
    pub name: String,
    pub beneficiary: Beneficiary,
    pub affiliate_id: Option<uuid::Uuid>,
    pub currency: String,
    pub tiers: Vec<Tier>,
    /// Lines up to this amount (minor units) are approved by the commission agent when the deal
    /// is won; larger ones wait for a manager. Absent: every line waits for a person.
    pub approval_threshold_minor: Option<i64>,
}

pub async fn create_rule(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(req): ApiJson<CreateRule>,
) -> Result<(StatusCode, Json<Rule>), ApiError> {
    auth.require(ROLES)?;
    if req.name.trim().is_empty() || req.name.chars().count() > 200 {
        return Err(ApiError::Invalid("name has 1 to 200 characters".into()));
    }
    super::check_currency(&req.currency)?;
    commissions::check_tiers(&req.tiers).map_err(ApiError::Invalid)?;
    if req.approval_threshold_minor.is_some_and(|t| t < 0) {
        return Err(ApiError::Invalid(
            "approval_threshold_minor is 0 or more".into(),
        ));
    }
    let beneficiary = match req.beneficiary {
        Beneficiary::Affiliate => "affiliate",
        Beneficiary::Owner => {
            if req.affiliate_id.is_some() {
                return Err(ApiError::Invalid(
                    "affiliate_id narrows affiliate rules only".into(),
                ));
            }
            "owner"
        }
    };
    let mut tx = auth.begin(&state.db).await?;
    let rule = commissions::create_rule(
        &mut tx,
        req.name.trim(),
        beneficiary,
        req.affiliate_id,
        &req.currency,
        &req.tiers,
        req.approval_threshold_minor,
    )
    .await?;
    audit::record_new(&mut tx, &auth, "create", "commission_rule", rule.id, &rule).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(rule)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommissionQuery {
    /// The first day of a month.
    pub period: Option<Date>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

pub async fn commissions(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiQuery(q): ApiQuery<CommissionQuery>,
) -> Result<Json<Page<Commission>>, ApiError> {
    auth.require(ROLES)?;
    let limit = PageQuery::limit_of(q.limit)?;
    let after = super::parse_cursor(q.cursor.as_deref())?;
    let mut tx = auth.begin(&state.db).await?;
    let items = commissions::list(&mut tx, q.period, after, limit + 1).await?;
    tx.commit().await?;
    Ok(Json(Page::from_rows(items, limit, |c| {
        Cursor::new(c.created_at, c.id)
    })))
}

pub async fn payouts(
    State(state): State<AppState>,
    auth: AuthUser,
    uri: axum::http::Uri,
) -> Result<Json<Items<Payout>>, ApiError> {
    auth.require(ROLES)?;
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Q {
        period: Date,
    }
    let q: Q = axum::extract::Query::try_from_uri(&uri)
        .map_err(|e| ApiError::BadRequest(e.body_text()))?
        .0;
    if q.period.day() != 1 {
        return Err(ApiError::Invalid(
            "period is the first day of a month".into(),
        ));
    }
    let mut tx = auth.begin(&state.db).await?;
    let items = commissions::payouts(&mut tx, q.period).await?;
    tx.commit().await?;
    Ok(Json(Items { items }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRule {
    pub name: Option<String>,
    pub active: Option<bool>,
}

/// `PATCH /commission-rules/{id}`: rename or (de)activate; tiers stay as computed commissions saw them.
pub async fn update_rule(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateRule>,
) -> Result<Json<Rule>, ApiError> {
    auth.require(ROLES)?;
    let id: uuid::Uuid = id
        .parse()
        .map_err(|_| ApiError::NotFound("commission rule"))?;
    if req
        .name
        .as_deref()
        .is_some_and(|n| n.trim().is_empty() || n.chars().count() > 200)
    {
        return Err(ApiError::Invalid("name has 1 to 200 characters".into()));
    }
    let mut tx = auth.begin(&state.db).await?;
    let rule =
        commissions::update_rule(&mut tx, id, req.name.as_deref().map(str::trim), req.active)
            .await?;
    audit::record_new(&mut tx, &auth, "update", "commission_rule", rule.id, &rule).await?;
    tx.commit().await?;
    Ok(Json(rule))
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommissionStatus {
    Pending,
    Approved,
    Paid,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateCommission {
    pub status: CommissionStatus,
}

/// `PATCH /commissions/{id}`: pending → approved → paid.
pub async fn update_commission(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateCommission>,
) -> Result<Json<Commission>, ApiError> {
    auth.require(ROLES)?;
    let id: uuid::Uuid = id.parse().map_err(|_| ApiError::NotFound("commission"))?;
    let next = match req.status {
        CommissionStatus::Pending => "pending",
        CommissionStatus::Approved => "approved",
        CommissionStatus::Paid => "paid",
    };
    let mut tx = auth.begin(&state.db).await?;
    let c = commissions::set_status(&mut tx, id, next).await?;
    audit::record_new(&mut tx, &auth, "update", "commission", c.id, &c).await?;
    tx.commit().await?;
    Ok(Json(c))
}
