//! `GET /api/v1/analytics/llm-usage`: the tenant's language-model usage per day, agent and model,
//! its caps and how much of them today and this month have used.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use time::Date;

use crate::app::AppState;
use crate::auth::{AuthUser, Role};
use crate::error::ApiError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// First day included (UTC); default: the first day of this month.
    pub from: Option<Date>,
    /// First day not included; default: tomorrow.
    pub to: Option<Date>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct UsageRow {
    pub day: Date,
    pub agent: String,
    pub model: String,
    pub calls: i64,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub cost_micros: i64,
}

#[derive(Debug, Default, Serialize)]
pub struct Totals {
    pub calls: i64,
    pub tokens: i64,
    pub cost_micros: i64,
}

#[derive(Debug, Serialize)]
pub struct LlmUsage {
    pub from: Date,
    pub to: Date,
    pub items: Vec<UsageRow>,
    pub totals: Totals,
    /// The tenant's caps (`settings.llm`); absent caps are unlimited.
    pub caps: runtime::llm::TenantLlmSettings,
    pub today: Totals,
    pub month: Totals,
}

pub async fn llm_usage(
    State(state): State<AppState>,
    auth: AuthUser,
    uri: axum::http::Uri,
) -> Result<Json<LlmUsage>, ApiError> {
    auth.require(Role::ADMINS)?;
    let q: UsageQuery = axum::extract::Query::try_from_uri(&uri)
        .map_err(|e| ApiError::BadRequest(e.body_text()))?
        .0;
    let today = time::OffsetDateTime::now_utc().date();
    let month_start = today.replace_day(1).unwrap_or(today);
    let from = q.from.unwrap_or(month_start);
    let to = q.to.unwrap_or(today.next_day().unwrap_or(today));
    if to <= from || (to - from) > time::Duration::days(3 * 366) {
        return Err(ApiError::Invalid(
            "to is after from, and at most three years later".into(),
        ));
    }
    let mut tx = auth.begin(&state.db).await?;
    let items: Vec<UsageRow> = sqlx::query_as(
        "SELECT day, agent, model, sum(calls)::bigint AS calls, sum(tokens_in)::bigint AS tokens_in,
                sum(tokens_out)::bigint AS tokens_out, sum(cost_micros)::bigint AS cost_micros
         FROM llm_usage
         WHERE tenant_id = wasit_current_tenant() AND day >= $1 AND day < $2
         GROUP BY day, agent, model ORDER BY day, agent, model",
    )
    .bind(from)
    .bind(to)
    .fetch_all(&mut *tx)
    .await?;
    let (caps, periods): (
        Option<sqlx::types::Json<serde_json::Value>>,
        sqlx::types::Json<[i64; 6]>,
    ) = sqlx::query_as(
        "SELECT (SELECT settings -> 'llm' FROM tenants WHERE id = wasit_current_tenant()),
                    jsonb_build_array(
                        coalesce(sum(calls) FILTER (WHERE day = $1), 0),
                        coalesce(sum(tokens_in + tokens_out) FILTER (WHERE day = $1), 0),
                        coalesce(sum(cost_micros) FILTER (WHERE day = $1), 0),
                        coalesce(sum(calls), 0), coalesce(sum(tokens_in + tokens_out), 0),
                        coalesce(sum(cost_micros), 0))
             FROM llm_usage WHERE tenant_id = wasit_current_tenant() AND day >= $2 AND day <= $1",
    )
    .bind(today)
    .bind(month_start)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    let caps = caps
        .and_then(|sqlx::types::Json(v)| serde_json::from_value(v).ok())
        .unwrap_or_default();
    let totals = items.iter().fold(Totals::default(), |t, r| Totals {
        calls: t.calls + r.calls,
        tokens: t.tokens + r.tokens_in + r.tokens_out,
        cost_micros: t.cost_micros + r.cost_micros,
    });
    let sqlx::types::Json(p) = periods;
    Ok(Json(LlmUsage {
        from,
        to,
        items,
        totals,
        caps,
        today: Totals {
            calls: p[0],
            tokens: p[1],
            cost_micros: p[2],
        },
        month: Totals {
            calls: p[3],
            tokens: p[4],
            cost_micros: p[5],
        },
    }))
}

/// `GET /api/v1/settings/llm`: the tenant's model choice and caps.
pub async fn get_llm_settings(
    State(state): State<AppState>,
    auth: AuthUser,
) -> Result<Json<runtime::llm::TenantLlmSettings>, ApiError> {
    auth.require(Role::ADMINS)?;
    let mut tx = auth.begin(&state.db).await?;
    let settings = read_llm_settings(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(settings))
}

/// `PUT /api/v1/settings/llm`: replaces them (caps apply from the next turn).
pub async fn put_llm_settings(
    State(state): State<AppState>,
    auth: AuthUser,
    crate::extract::ApiJson(body): crate::extract::ApiJson<serde_json::Value>,
) -> Result<Json<runtime::llm::TenantLlmSettings>, ApiError> {
    auth.require(Role::ADMINS)?;
    let keys = body
        .as_object()
        .ok_or_else(|| ApiError::Invalid("the settings are a JSON object".into()))?;
    if let Some(unknown) = keys
        .keys()
        .find(|k| !runtime::llm::TenantLlmSettings::KEYS.contains(&k.as_str()))
    {
        return Err(ApiError::Invalid(format!(
            "unknown setting {unknown:?}; known: {}",
            runtime::llm::TenantLlmSettings::KEYS.join(", ")
        )));
    }
    let req: runtime::llm::TenantLlmSettings =
        serde_json::from_value(body).map_err(|e| ApiError::Invalid(e.to_string()))?;
    check_llm_settings(&req)?;
    let mut tx = auth.begin(&state.db).await?;
    let before = read_llm_settings(&mut tx).await?;
    sqlx::query(
        "UPDATE tenants SET settings = jsonb_set(settings, '{llm}', $1) WHERE id = wasit_current_tenant()",
    )
    .bind(sqlx::types::Json(&req))
    .execute(&mut *tx)
    .await?;
    crate::repo::audit::record(
        &mut tx,
        &auth,
        "update",
        "tenant_llm_settings",
        auth.tenant.0,
        &before,
        &req,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(req))
}

async fn read_llm_settings(
    tx: &mut runtime::db::TenantTx,
) -> Result<runtime::llm::TenantLlmSettings, ApiError> {
    let value: Option<sqlx::types::Json<serde_json::Value>> = sqlx::query_scalar(
        "SELECT settings -> 'llm' FROM tenants WHERE id = wasit_current_tenant()",
    )
    .fetch_one(&mut **tx)
    .await?;
    Ok(value
        .and_then(|sqlx::types::Json(v)| serde_json::from_value(v).ok())
        .unwrap_or_default())
}

fn check_llm_settings(s: &runtime::llm::TenantLlmSettings) -> Result<(), ApiError> {
    let model_ok = |m: &str| !m.trim().is_empty() && m.len() <= 200 && m.trim() == m;
    if s.model.as_deref().is_some_and(|m| !model_ok(m)) {
        return Err(ApiError::Invalid(
            "model is a model name of 1 to 200 characters".into(),
        ));
    }
    for (agent, model) in &s.agent_models {
        let kind_ok = !agent.is_empty()
            && agent.len() <= 60
            && agent.chars().all(|c| c.is_ascii_lowercase() || c == '_');
        if !kind_ok || !model_ok(model) {
            return Err(ApiError::Invalid(format!(
                "agent_models maps agent kinds (lowercase, e.g. \"sales\") to model names; {agent:?} → {model:?} is not one"
            )));
        }
    }
    for (name, cap) in [
        ("daily_tokens", s.daily_tokens),
        ("monthly_tokens", s.monthly_tokens),
    ] {
        if cap.is_some_and(|c| c < 0) {
            return Err(ApiError::Invalid(format!(
                "{name} is a token count of 0 or more"
            )));
        }
    }
    for (name, cap) in [
        ("daily_cost_usd", s.daily_cost_usd),
        ("monthly_cost_usd", s.monthly_cost_usd),
    ] {
        if cap.is_some_and(|c| !c.is_finite() || c < 0.0) {
            return Err(ApiError::Invalid(format!(
                "{name} is an amount in dollars, 0 or more"
            )));
        }
    }
    Ok(())
}
