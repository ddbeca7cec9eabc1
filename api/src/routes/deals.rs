//! Deals and the pipeline: `GET/POST /deals`, `GET/PATCH /deals/{id}`, `GET /deals/forecast`,
//! `GET /deals/summary`, `GET /pipeline/stages`. Amounts are integer minor units with an ISO 4217
//! currency; a deal in a won or lost stage is closed and does not change again (409).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use runtime::{ContactId, LeadId, UserId};
use serde::{Deserialize, Serialize};
use time::Date;

use super::{Page, PageQuery};
use crate::app::AppState;
use crate::auth::{AuthUser, Role};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::repo::Cursor;
use crate::repo::audit;
use crate::repo::deals::{self, Deal, ForecastRow, Stage, StageKind, StageSummary};

/// Who may read and change deals.
pub const ROLES: &[Role] = Role::SALES;

#[derive(Debug, Serialize)]
pub struct Items<T> {
    pub items: Vec<T>,
}

pub async fn stages(
    State(state): State<AppState>,
    auth: AuthUser,
) -> Result<Json<Items<Stage>>, ApiError> {
    auth.require(ROLES)?;
    let mut tx = auth.begin(&state.db).await?;
    let items = deals::stages(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(Items { items }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub stage_id: Option<uuid::Uuid>,
    pub owner_user_id: Option<UserId>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<Deal>>, ApiError> {
    auth.require(ROLES)?;
    let limit = PageQuery::limit_of(q.limit)?;
    let after = super::parse_cursor(q.cursor.as_deref())?;
    let mut tx = auth.begin(&state.db).await?;
    let items = deals::list(&mut tx, q.stage_id, q.owner_user_id, after, limit + 1).await?;
    tx.commit().await?;
    Ok(Json(Page::from_rows(items, limit, |d| {
        Cursor::new(d.created_at, d.id)
    })))
}

fn deal_id(raw: &str) -> Result<uuid::Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound("deal"))
}

pub async fn get(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Deal>, ApiError> {
    auth.require(ROLES)?;
    let id = deal_id(&id)?;
    let mut tx = auth.begin(&state.db).await?;
    let deal = deals::find(&mut tx, id, false).await?;
    tx.commit().await?;
    Ok(Json(deal))
}

fn check_amount(a: i64) -> Result<(), ApiError> {
    if a < 0 {
        return Err(ApiError::Invalid(
            "amount_minor is a whole number of minor units, at least 0".into(),
        ));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDeal {
    pub title: String,
    /// Whole minor units (halalas for SAR): 1234567 is 12,345.67 SAR.
    pub amount_minor: i64,
    pub currency: String,
    /// Default: the first open stage.
    pub stage_id: Option<uuid::Uuid>,
    pub lead_id: Option<LeadId>,
    pub contact_id: Option<ContactId>,
    pub expected_close_date: Option<Date>,
    pub owner_user_id: Option<UserId>,
    pub affiliate_id: Option<uuid::Uuid>,
}

pub async fn create(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(req): ApiJson<CreateDeal>,
) -> Result<(StatusCode, Json<Deal>), ApiError> {
    auth.require(ROLES)?;
    let title = super::check_title(&req.title)?;
    check_amount(req.amount_minor)?;
    super::check_currency(&req.currency)?;
    let mut tx = auth.begin(&state.db).await?;
    let stage = match req.stage_id {
        Some(id) => deals::stage(&mut tx, id).await?,
        None => deals::stages(&mut tx)
            .await?
            .into_iter()
            .find(|s| s.kind.0 == StageKind::Open)
            .ok_or_else(|| ApiError::Conflict("the pipeline has no open stage".into()))?,
    };
    if stage.kind.0 != StageKind::Open {
        return Err(ApiError::Invalid(format!(
            "a deal starts in an open stage, not in {}",
            stage.name
        )));
    }
    let now = time::OffsetDateTime::now_utc();
    let draft = Deal {
        id: uuid::Uuid::nil(),
        title,
        lead_id: req.lead_id,
        contact_id: req.contact_id,
        stage_id: stage.id,
        amount_minor: req.amount_minor,
        currency: req.currency,
        expected_close_date: req.expected_close_date,
        owner_user_id: req.owner_user_id,
        affiliate_id: req.affiliate_id,
        win_probability: None,
        next_step: None,
        closed_at: None,
        created_at: now,
        updated_at: now,
    };
    let deal = deals::create(&mut tx, &draft, (auth.user, auth.role.as_str())).await?;
    audit::record_new(&mut tx, &auth, "create", "deal", deal.id, &deal).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(deal)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateDeal {
    pub title: Option<String>,
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    pub stage_id: Option<uuid::Uuid>,
    #[serde(default, deserialize_with = "super::nullable")]
    pub lead_id: Option<Option<LeadId>>,
    #[serde(default, deserialize_with = "super::nullable")]
    pub contact_id: Option<Option<ContactId>>,
    #[serde(default, deserialize_with = "super::nullable")]
    pub expected_close_date: Option<Option<Date>>,
    #[serde(default, deserialize_with = "super::nullable")]
    pub owner_user_id: Option<Option<UserId>>,
    #[serde(default, deserialize_with = "super::nullable")]
    pub affiliate_id: Option<Option<uuid::Uuid>>,
}

pub async fn update(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateDeal>,
) -> Result<Json<Deal>, ApiError> {
    auth.require(ROLES)?;
    let id = deal_id(&id)?;
    let mut tx = auth.begin(&state.db).await?;
    let before = deals::find(&mut tx, id, true).await?;
    if before.closed_at.is_some() {
        return Err(ApiError::Conflict(
            "the deal is closed (won or lost) and does not change again".into(),
        ));
    }
    let mut deal = before.clone();
    if let Some(title) = &req.title {
        deal.title = super::check_title(title)?;
    }
    if let Some(amount) = req.amount_minor {
        check_amount(amount)?;
        deal.amount_minor = amount;
    }
    if let Some(currency) = req.currency {
        super::check_currency(&currency)?;
        deal.currency = currency;
    }
    let mut moved_from = None;
    let mut closes = false;
    let mut won = false;
    if let Some(stage_id) = req.stage_id
        && stage_id != deal.stage_id
    {
        let stage = deals::stage(&mut tx, stage_id).await?;
        moved_from = Some(deal.stage_id);
        closes = stage.kind.0 != StageKind::Open;
        won = stage.kind.0 == StageKind::Won;
        deal.stage_id = stage.id;
    }
    if let Some(v) = req.lead_id {
        deal.lead_id = v;
    }
    if let Some(v) = req.contact_id {
        deal.contact_id = v;
    }
    if let Some(v) = req.expected_close_date {
        deal.expected_close_date = v;
    }
    if let Some(v) = req.owner_user_id {
        deal.owner_user_id = v;
    }
    if let Some(v) = req.affiliate_id {
        deal.affiliate_id = v;
    }
    let saved = deals::save(
        &mut tx,
        &deal,
        moved_from,
        closes,
        (auth.user, auth.role.as_str()),
    )
    .await?;
    if won {
        // Won: its commissions are owed, computed in the same transaction.
        let now = time::OffsetDateTime::now_utc();
        crate::repo::commissions::on_deal_won(&mut tx, &saved, now).await?;
    }
    audit::record(&mut tx, &auth, "update", "deal", saved.id, &before, &saved).await?;
    tx.commit().await?;
    Ok(Json(saved))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForecastQuery {
    /// First day included.
    pub from: Date,
    /// First day not included.
    pub to: Date,
    #[serde(default)]
    pub period: Period,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    #[default]
    Month,
    Quarter,
}

pub async fn forecast(
    State(state): State<AppState>,
    auth: AuthUser,
    uri: axum::http::Uri,
) -> Result<Json<Items<ForecastRow>>, ApiError> {
    // The role first: a role that may not see forecasts learns nothing from the query's errors.
    auth.require(ROLES)?;
    let q: ForecastQuery = axum::extract::Query::try_from_uri(&uri)
        .map_err(|e| ApiError::BadRequest(e.body_text()))?
        .0;
    if q.to <= q.from || (q.to - q.from) > time::Duration::days(3 * 366) {
        return Err(ApiError::Invalid(
            "to is after from, and at most three years later".into(),
        ));
    }
    let period = match q.period {
        Period::Month => "month",
        Period::Quarter => "quarter",
    };
    let mut tx = auth.begin(&state.db).await?;
    let items = deals::forecast(&mut tx, q.from, q.to, period).await?;
    tx.commit().await?;
    Ok(Json(Items { items }))
}

pub async fn summary(
    State(state): State<AppState>,
    auth: AuthUser,
) -> Result<Json<Items<StageSummary>>, ApiError> {
    auth.require(ROLES)?;
    let mut tx = auth.begin(&state.db).await?;
    let items = deals::summary(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(Items { items }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateStage {
    pub name: String,
    pub position: i32,
    pub probability: i16,
    #[serde(default = "open_kind")]
    pub kind: StageKind,
}

fn open_kind() -> StageKind {
    StageKind::Open
}

fn check_stage(
    name: Option<&str>,
    position: Option<i32>,
    probability: Option<i16>,
) -> Result<(), ApiError> {
    if name.is_some_and(|n| n.trim().is_empty() || n.chars().count() > 100) {
        return Err(ApiError::Invalid("name has 1 to 100 characters".into()));
    }
    if position.is_some_and(|p| p < 0) {
        return Err(ApiError::Invalid("position is at least 0".into()));
    }
    if probability.is_some_and(|p| !(0..=100).contains(&p)) {
        return Err(ApiError::Invalid("probability is 0 to 100".into()));
    }
    Ok(())
}

/// `POST /pipeline/stages` (admins, managers).
pub async fn create_stage(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(req): ApiJson<CreateStage>,
) -> Result<(StatusCode, Json<Stage>), ApiError> {
    auth.require(crate::routes::meetings::HOURS_EDITORS)?;
    check_stage(Some(&req.name), Some(req.position), Some(req.probability))?;
    let mut tx = auth.begin(&state.db).await?;
    let stage = deals::create_stage(
        &mut tx,
        req.name.trim(),
        req.position,
        req.probability,
        req.kind,
    )
    .await?;
    audit::record_new(&mut tx, &auth, "create", "pipeline_stage", stage.id, &stage).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(stage)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateStage {
    pub name: Option<String>,
    pub position: Option<i32>,
    pub probability: Option<i16>,
}

/// `PATCH /pipeline/stages/{id}` (admins, managers): forecasts use the new probability at once.
pub async fn update_stage(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateStage>,
) -> Result<Json<Stage>, ApiError> {
    auth.require(crate::routes::meetings::HOURS_EDITORS)?;
    let id: uuid::Uuid = id.parse().map_err(|_| ApiError::NotFound("stage"))?;
    check_stage(req.name.as_deref(), req.position, req.probability)?;
    let mut tx = auth.begin(&state.db).await?;
    let stage = deals::update_stage(
        &mut tx,
        id,
        req.name.as_deref().map(str::trim),
        req.position,
        req.probability,
    )
    .await?;
    audit::record_new(&mut tx, &auth, "update", "pipeline_stage", stage.id, &stage).await?;
    tx.commit().await?;
    Ok(Json(stage))
}
