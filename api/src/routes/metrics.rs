//! `GET /metrics`: Prometheus text format. Language-model usage per tenant, agent and model
//! comes from `llm_usage` (so every node reports the same, durable numbers), read through the
//! platform role. Labels name tenants, so it answers superadmins only: give Prometheus a
//! superadmin token (`wasit token --tenant S --role superadmin`) as its bearer token.

use std::fmt::Write;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::auth::{AuthUser, Role};
use crate::error::ApiError;

#[derive(sqlx::FromRow)]
struct Row {
    tenant: String,
    agent: String,
    model: String,
    calls: i64,
    tokens_in: i64,
    tokens_out: i64,
    cost_micros: i64,
}

/// Escapes a label value for the text format.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub async fn metrics(State(state): State<AppState>, auth: AuthUser) -> Result<Response, ApiError> {
    auth.require(&[Role::Superadmin])?;
    let Some(pool) = state.platform.as_ref() else {
        return Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics need the platform pool\n",
        )
            .into_response());
    };
    let rows: Result<Vec<Row>, runtime::Error> = async {
        let mut tx = runtime::db::begin_platform(pool).await?;
        let rows = sqlx::query_as(
            "SELECT t.slug AS tenant, u.agent, u.model, sum(u.calls)::bigint AS calls,
                    sum(u.tokens_in)::bigint AS tokens_in, sum(u.tokens_out)::bigint AS tokens_out,
                    sum(u.cost_micros)::bigint AS cost_micros
             FROM llm_usage u JOIN tenants t ON t.id = u.tenant_id
             GROUP BY t.slug, u.agent, u.model ORDER BY 1, 2, 3",
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows)
    }
    .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "metrics: reading usage failed");
            return Ok((
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable\n",
            )
                .into_response());
        }
    };
    let mut out = String::new();
    type Series = (&'static str, &'static str, fn(&Row) -> String);
    let series: [Series; 4] = [
        ("wasit_llm_calls_total", "Language-model calls.", |r| {
            r.calls.to_string()
        }),
        (
            "wasit_llm_prompt_tokens_total",
            "Prompt (input) tokens sent to language models.",
            |r| r.tokens_in.to_string(),
        ),
        (
            "wasit_llm_completion_tokens_total",
            "Completion (output) tokens received.",
            |r| r.tokens_out.to_string(),
        ),
        (
            "wasit_llm_cost_usd_total",
            "Cost in US dollars, from the price table.",
            |r| format!("{:.6}", r.cost_micros as f64 / 1e6),
        ),
    ];
    for (name, help, value) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for r in &rows {
            let _ = writeln!(
                out,
                "{name}{{tenant=\"{}\",agent=\"{}\",model=\"{}\"}} {}",
                label(&r.tenant),
                label(&r.agent),
                label(&r.model),
                value(r)
            );
        }
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
}
