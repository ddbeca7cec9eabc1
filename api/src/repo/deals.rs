//! Deals, the pipeline they move through, and the arithmetic of forecasts.
//!
//! Money is `i64` minor units with an ISO 4217 currency, never a float. Weighted amounts follow one
//! rounding rule, in one place ([`weighted`]): Σ(amount_minor × probability) / 100 over a group,
//! rounded half away from zero to a whole minor unit once per group (period and currency, or stage
//! and currency), never per deal.

use runtime::db::TenantTx;
use runtime::{ContactId, LeadId, UserId};
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

use super::{Cursor, foreign_key_is_invalid};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    Open,
    Won,
    Lost,
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Stage {
    pub id: uuid::Uuid,
    pub name: String,
    pub position: i32,
    pub probability: i16,
    #[sqlx(try_from = "String")]
    pub kind: StageKindText,
}

/// The stored text of a stage kind, checked on the way out of the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct StageKindText(pub StageKind);

impl TryFrom<String> for StageKindText {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "open" => Ok(Self(StageKind::Open)),
            "won" => Ok(Self(StageKind::Won)),
            "lost" => Ok(Self(StageKind::Lost)),
            other => Err(format!("unknown stage kind {other:?} in database")),
        }
    }
}

/// Adds a stage; a position or name the pipeline has already is a conflict.
pub async fn create_stage(
    tx: &mut TenantTx,
    name: &str,
    position: i32,
    probability: i16,
    kind: StageKind,
) -> runtime::Result<Stage> {
    sqlx::query_as::<_, Stage>(
        "INSERT INTO pipeline_stages (tenant_id, name, position, probability, kind)
         VALUES (wasit_current_tenant(), $1, $2, $3, $4)
         RETURNING id, name, position, probability, kind",
    )
    .bind(name)
    .bind(position)
    .bind(probability)
    .bind(kind_str(kind))
    .fetch_one(&mut **tx)
    .await
    .map_err(stage_error)
}

/// Renames, moves or reweights a stage (its kind stays).
pub async fn update_stage(
    tx: &mut TenantTx,
    id: uuid::Uuid,
    name: Option<&str>,
    position: Option<i32>,
    probability: Option<i16>,
) -> runtime::Result<Stage> {
    sqlx::query_as::<_, Stage>(
        "UPDATE pipeline_stages SET name = coalesce($2, name), position = coalesce($3, position),
                probability = coalesce($4, probability)
         WHERE tenant_id = wasit_current_tenant() AND id = $1
         RETURNING id, name, position, probability, kind",
    )
    .bind(id)
    .bind(name)
    .bind(position)
    .bind(probability)
    .fetch_optional(&mut **tx)
    .await
    .map_err(stage_error)?
    .ok_or(runtime::Error::NotFound("stage"))
}

fn kind_str(kind: StageKind) -> &'static str {
    match kind {
        StageKind::Open => "open",
        StageKind::Won => "won",
        StageKind::Lost => "lost",
    }
}

fn stage_error(e: sqlx::Error) -> runtime::Error {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            runtime::Error::Conflict("the pipeline has a stage with that name or position".into())
        }
        sqlx::Error::Database(d) if d.is_check_violation() => {
            runtime::Error::Invalid("a won stage has probability 100 and a lost stage 0".into())
        }
        _ => e.into(),
    }
}

/// The tenant's stages, in pipeline order.
pub async fn stages(tx: &mut TenantTx) -> runtime::Result<Vec<Stage>> {
    Ok(sqlx::query_as::<_, Stage>(
        "SELECT id, name, position, probability, kind FROM pipeline_stages
         WHERE tenant_id = wasit_current_tenant() ORDER BY position",
    )
    .fetch_all(&mut **tx)
    .await?)
}

#[derive(Clone, Debug, Serialize)]
pub struct Deal {
    pub id: uuid::Uuid,
    pub title: String,
    pub lead_id: Option<LeadId>,
    pub contact_id: Option<ContactId>,
    pub stage_id: uuid::Uuid,
    pub amount_minor: i64,
    pub currency: String,
    pub expected_close_date: Option<Date>,
    pub owner_user_id: Option<UserId>,
    /// The affiliate who brought the deal: earns the affiliate commission when it is won.
    pub affiliate_id: Option<uuid::Uuid>,
    /// The deal coach's estimate of the chance to win (0–100) and the next step it recommends.
    pub win_probability: Option<i16>,
    pub next_step: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub closed_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(sqlx::FromRow)]
struct DealRow {
    id: uuid::Uuid,
    title: String,
    lead_id: Option<LeadId>,
    contact_id: Option<ContactId>,
    stage_id: uuid::Uuid,
    amount_minor: i64,
    currency: String,
    expected_close_date: Option<Date>,
    owner_user_id: Option<UserId>,
    affiliate_id: Option<uuid::Uuid>,
    win_probability: Option<i16>,
    next_step: Option<String>,
    closed_at: Option<OffsetDateTime>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl From<DealRow> for Deal {
    fn from(r: DealRow) -> Self {
        Deal {
            id: r.id,
            title: r.title,
            lead_id: r.lead_id,
            contact_id: r.contact_id,
            stage_id: r.stage_id,
            amount_minor: r.amount_minor,
            currency: r.currency,
            expected_close_date: r.expected_close_date,
            owner_user_id: r.owner_user_id,
            affiliate_id: r.affiliate_id,
            win_probability: r.win_probability,
            next_step: r.next_step,
            closed_at: r.closed_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

const COLUMNS: &str = "id, title, lead_id, contact_id, stage_id, amount_minor, currency, \
                       expected_close_date, owner_user_id, affiliate_id, win_probability, next_step, \
                       closed_at, created_at, updated_at";

pub async fn find(tx: &mut TenantTx, id: uuid::Uuid, lock: bool) -> runtime::Result<Deal> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    sqlx::query_as::<_, DealRow>(&format!(
        "SELECT {COLUMNS} FROM deals WHERE tenant_id = wasit_current_tenant() AND id = $1{lock}"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .map(Deal::from)
    .ok_or(runtime::Error::NotFound("deal"))
}

/// The stage, if it is the tenant's; `Invalid` otherwise (a body named it).
pub async fn stage(tx: &mut TenantTx, id: uuid::Uuid) -> runtime::Result<Stage> {
    sqlx::query_as::<_, Stage>(
        "SELECT id, name, position, probability, kind FROM pipeline_stages
         WHERE tenant_id = wasit_current_tenant() AND id = $1",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| runtime::Error::Invalid("stage_id is not a stage of this tenant".into()))
}

/// Inserts `deal` (its id, timestamps and `closed_at` are ignored) and its first history row.
pub async fn create(
    tx: &mut TenantTx,
    deal: &Deal,
    actor: (Option<UserId>, &str),
) -> runtime::Result<Deal> {
    let row = sqlx::query_as::<_, DealRow>(&format!(
        "INSERT INTO deals (tenant_id, title, lead_id, contact_id, stage_id, amount_minor, currency,
                            expected_close_date, owner_user_id, affiliate_id)
         VALUES (wasit_current_tenant(), $1, $2, $3, $4, $5, $6, $7, $8, $9)
         RETURNING {COLUMNS}"
    ))
    .bind(&deal.title)
    .bind(deal.lead_id)
    .bind(deal.contact_id)
    .bind(deal.stage_id)
    .bind(deal.amount_minor)
    .bind(&deal.currency)
    .bind(deal.expected_close_date)
    .bind(deal.owner_user_id)
    .bind(deal.affiliate_id)
    .fetch_one(&mut **tx)
    .await
    .map_err(foreign_key_is_invalid)?;
    record_stage(tx, row.id, None, row.stage_id, actor).await?;
    Ok(row.into())
}

/// Writes `deal` back; `moved_from` is the stage it left, when it moved (history is recorded and
/// `closed_at` set when the new stage closes it).
pub async fn save(
    tx: &mut TenantTx,
    deal: &Deal,
    moved_from: Option<uuid::Uuid>,
    closes: bool,
    actor: (Option<UserId>, &str),
) -> runtime::Result<Deal> {
    let row = sqlx::query_as::<_, DealRow>(&format!(
        "UPDATE deals SET title = $2, lead_id = $3, contact_id = $4, stage_id = $5, amount_minor = $6,
                          currency = $7, expected_close_date = $8, owner_user_id = $9, affiliate_id = $11,
                          win_probability = $12, next_step = $13,
                          closed_at = CASE WHEN $10 THEN now() ELSE closed_at END, updated_at = now()
         WHERE tenant_id = wasit_current_tenant() AND id = $1
         RETURNING {COLUMNS}"
    ))
    .bind(deal.id)
    .bind(&deal.title)
    .bind(deal.lead_id)
    .bind(deal.contact_id)
    .bind(deal.stage_id)
    .bind(deal.amount_minor)
    .bind(&deal.currency)
    .bind(deal.expected_close_date)
    .bind(deal.owner_user_id)
    .bind(closes)
    .bind(deal.affiliate_id)
    .bind(deal.win_probability)
    .bind(&deal.next_step)
    .fetch_one(&mut **tx)
    .await
    .map_err(foreign_key_is_invalid)?;
    if let Some(from) = moved_from {
        record_stage(tx, row.id, Some(from), row.stage_id, actor).await?;
    }
    Ok(row.into())
}

async fn record_stage(
    tx: &mut TenantTx,
    deal: uuid::Uuid,
    from: Option<uuid::Uuid>,
    to: uuid::Uuid,
    (user, role): (Option<UserId>, &str),
) -> runtime::Result<()> {
    sqlx::query(
        "INSERT INTO deal_stage_history (tenant_id, deal_id, from_stage_id, to_stage_id, actor_user_id, actor_role)
         VALUES (wasit_current_tenant(), $1, $2, $3, $4, $5)",
    )
    .bind(deal)
    .bind(from)
    .bind(to)
    .bind(user)
    .bind(role)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn list(
    tx: &mut TenantTx,
    stage: Option<uuid::Uuid>,
    owner: Option<UserId>,
    after: Option<Cursor>,
    limit: i64,
) -> runtime::Result<Vec<Deal>> {
    let rows = sqlx::query_as::<_, DealRow>(&format!(
        "SELECT {COLUMNS} FROM deals
         WHERE tenant_id = wasit_current_tenant()
           AND ($1::uuid IS NULL OR stage_id = $1)
           AND ($2::uuid IS NULL OR owner_user_id = $2)
           AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
         ORDER BY created_at DESC, id DESC
         LIMIT $5"
    ))
    .bind(stage)
    .bind(owner)
    .bind(after.map(|c| c.created_at))
    .bind(after.map(|c| c.id))
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.into_iter().map(Deal::from).collect())
}

/// Σ(amount_minor × probability) / 100, rounded half away from zero: the one rounding rule of
/// weighted amounts. `products` is the exact sum of amount × probability (i128: no overflow for
/// any realistic pipeline).
pub fn weighted(products: i128) -> i128 {
    let (q, r) = (products / 100, products % 100);
    if r.abs() * 2 >= 100 {
        q + products.signum()
    } else {
        q
    }
}

/// One period of the forecast, per currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ForecastRow {
    /// First day of the period.
    pub period: Date,
    pub currency: String,
    pub deals: i64,
    /// Unweighted total of the open deals expected to close in the period.
    pub pipeline_minor: i64,
    /// Weighted by each stage's probability (see [`weighted`]).
    pub weighted_minor: i64,
    /// The forecaster agent's latest estimate for the month, when there is one (monthly periods).
    pub agent_forecast: Option<AgentForecast>,
}

/// What the forecaster agent expects a month to bring, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct AgentForecast {
    pub amount_minor: i64,
    pub reasons: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Open deals expected to close in `[from, to)`, by `period` (`month` or `quarter`) and currency.
pub async fn forecast(
    tx: &mut TenantTx,
    from: Date,
    to: Date,
    period: &str,
) -> runtime::Result<Vec<ForecastRow>> {
    let rows: Vec<(Date, String, i64, i64, String)> = sqlx::query_as(
        "SELECT date_trunc($3, d.expected_close_date)::date AS period, d.currency, count(*),
                sum(d.amount_minor)::bigint, sum(d.amount_minor::numeric * s.probability)::text
         FROM deals d JOIN pipeline_stages s ON s.tenant_id = d.tenant_id AND s.id = d.stage_id
         WHERE d.tenant_id = wasit_current_tenant() AND s.kind = 'open'
           AND d.expected_close_date >= $1 AND d.expected_close_date < $2
         GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .bind(from)
    .bind(to)
    .bind(period)
    .fetch_all(&mut **tx)
    .await?;
    let estimates: Vec<(Date, String, i64, String, OffsetDateTime)> = if period == "month" {
        sqlx::query_as(
            "SELECT DISTINCT ON (period, currency) period, currency, amount_minor, reasons, created_at
             FROM forecasts WHERE tenant_id = wasit_current_tenant() AND period >= $1 AND period < $2
             ORDER BY period, currency, created_at DESC",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&mut **tx)
        .await?
    } else {
        Vec::new()
    };
    rows.into_iter()
        .map(|(period, currency, deals, pipeline, products)| {
            let agent_forecast = estimates
                .iter()
                .find(|e| e.0 == period && e.1 == currency)
                .map(|e| AgentForecast {
                    amount_minor: e.2,
                    reasons: e.3.clone(),
                    created_at: e.4,
                });
            Ok(ForecastRow {
                period,
                currency,
                deals,
                pipeline_minor: pipeline,
                weighted_minor: to_minor(&products)?,
                agent_forecast,
            })
        })
        .collect()
}

fn to_minor(products: &str) -> runtime::Result<i64> {
    let exact: i128 = products.parse().map_err(|_| {
        runtime::Error::Invalid(format!("weighted sum {products:?} is not an integer"))
    })?;
    i64::try_from(weighted(exact))
        .map_err(|_| runtime::Error::Invalid("a weighted amount overflows".into()))
}

/// One stage of the pipeline summary, per currency (a stage without deals has one row with
/// `currency` null).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StageSummary {
    pub stage_id: uuid::Uuid,
    pub name: String,
    pub position: i32,
    pub probability: i16,
    pub currency: Option<String>,
    pub deals: i64,
    pub amount_minor: i64,
    pub weighted_minor: i64,
}

#[derive(sqlx::FromRow)]
struct SummaryRow {
    id: uuid::Uuid,
    name: String,
    position: i32,
    probability: i16,
    currency: Option<String>,
    deals: i64,
    amount: i64,
    /// Σ amount × probability, exact, as text (numeric).
    products: String,
}

pub async fn summary(tx: &mut TenantTx) -> runtime::Result<Vec<StageSummary>> {
    let rows: Vec<SummaryRow> = sqlx::query_as(
        "SELECT s.id, s.name, s.position, s.probability, d.currency, count(d.id) AS deals,
                coalesce(sum(d.amount_minor), 0)::bigint AS amount,
                coalesce(sum(d.amount_minor::numeric * s.probability), 0)::text AS products
         FROM pipeline_stages s
         LEFT JOIN deals d ON d.tenant_id = s.tenant_id AND d.stage_id = s.id
         WHERE s.tenant_id = wasit_current_tenant()
         GROUP BY s.id, s.name, s.position, s.probability, d.currency
         ORDER BY s.position, d.currency",
    )
    .fetch_all(&mut **tx)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(StageSummary {
                weighted_minor: to_minor(&r.products)?,
                stage_id: r.id,
                name: r.name,
                position: r.position,
                probability: r.probability,
                currency: r.currency,
                deals: r.deals,
                amount_minor: r.amount,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::weighted;

    #[test]
    fn weighted_amounts_round_half_away_from_zero_once() {
        // 1 halala at 50 % is half a halala: rounds up to 1.
        assert_eq!(weighted(50), 1);
        assert_eq!(weighted(49), 0);
        assert_eq!(weighted(149), 1);
        assert_eq!(weighted(150), 2);
        assert_eq!(weighted(-150), -2);
        // Three deals of 1 halala at 50 %: 1.5 rounds to 2 (rounding per deal would give 3).
        assert_eq!(weighted(3 * 50), 2);
        // 12,345.67 SAR at 70 % = 8,641.969 SAR: 864,197 halalas.
        assert_eq!(weighted(1_234_567 * 70), 864_197);
    }
}
