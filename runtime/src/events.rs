//! CRM events for the background agents (`scorer`, `router`, `deal_coach`, `forecaster`).
//!
//! Triggers on `leads` and `deals` write an `agent_events` row in the transaction of the change
//! (see the migration `agent_events`), so an event exists exactly when its change committed,
//! whoever made it. The runtime's event dispatcher ([`crate::actors`]) finds due events
//! ([`due`]), claims each for a lease ([`claim`]), builds the agent's turn ([`load_input`]): the
//! event as the message it answers, the lead, the contact's recent conversation as history — and
//! commits the outcome ([`apply`]): the tools' actions once per (event, call), the audited turn,
//! the event done. A background agent never writes to a contact: any reply is dropped.

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::actions::ActionHandler;
use crate::db::begin_tenant;
use crate::domain::{AgentKind, Channel};
use crate::error::{Error, Result};
use crate::ids::{ContactId, DealId, EventId, LeadId, MessageId, TenantId};
use crate::turn::{
    ContactInfo, EventNote, HistoryItem, TenantInfo, TurnAction, TurnInput, TurnMessage,
    TurnOutcome, record,
};

/// The `handoff.from` of a turn a due follow-up starts (`wasit_fire_follow_ups` writes it).
pub const FOLLOW_UP_TIMER: &str = "follow_up_timer";

/// Attempts after which an event is given up (`failed`) and an admin is told.
pub const MAX_ATTEMPTS: i32 = 5;

/// Messages of the contact's conversation a background agent reads.
pub const HISTORY: i64 = 50;

/// Events due now, across tenants, oldest first.
pub async fn due(pool: &PgPool, limit: usize) -> Result<Vec<(TenantId, EventId)>> {
    Ok(
        sqlx::query_as("SELECT tenant_id, id FROM wasit_due_agent_events($1)")
            .bind(i32::try_from(limit).unwrap_or(i32::MAX))
            .fetch_all(pool)
            .await?,
    )
}

/// Writes today's `forecast_due` event for every tenant with open deals (once per tenant and UTC
/// day); returns how many it wrote.
pub async fn schedule_forecasts(pool: &PgPool) -> Result<i32> {
    Ok(sqlx::query_scalar("SELECT wasit_schedule_forecasts()")
        .fetch_one(pool)
        .await?)
}

/// Fires the follow-ups due now (at most `limit`): each conversation is handed to the follow-up
/// agent (see the migration `follow_ups`); returns the conversations to run a turn for.
pub async fn fire_follow_ups(
    pool: &PgPool,
    limit: usize,
) -> Result<Vec<(TenantId, ContactId, crate::ConversationId)>> {
    Ok(sqlx::query_as(
        "SELECT tenant_id, contact_id, conversation_id FROM wasit_fire_follow_ups($1)",
    )
    .bind(i32::try_from(limit).unwrap_or(i32::MAX))
    .fetch_all(pool)
    .await?)
}

/// Takes an event for `lease`: nobody else runs it meanwhile; if this process dies, it is due
/// again when the lease ends. `false` when it is not due (taken, or done).
pub async fn claim(
    pool: &PgPool,
    tenant: TenantId,
    event: EventId,
    lease: std::time::Duration,
) -> Result<bool> {
    let mut tx = begin_tenant(pool, tenant).await?;
    let claimed = sqlx::query(
        "UPDATE agent_events SET attempts = attempts + 1,
             next_attempt_at = now() + make_interval(secs => $2)
         WHERE tenant_id = wasit_current_tenant() AND id = $1 AND status = 'pending'
           AND next_attempt_at <= now()",
    )
    .bind(event)
    .bind(lease.as_secs_f64())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(claimed == 1)
}

#[derive(sqlx::FromRow)]
struct EventRow {
    agent: AgentKind,
    kind: String,
    lead_id: Option<LeadId>,
    deal_id: Option<DealId>,
    detail: Value,
    slug: String,
    name: String,
    contact_id: Option<ContactId>,
    display_name: Option<String>,
    locale: Option<String>,
    channel: Option<Channel>,
    lead: Option<sqlx::types::Json<crate::turn::LeadInfo>>,
    llm_settings: Option<sqlx::types::Json<Value>>,
    usage: sqlx::types::Json<(i64, i64, i64, i64)>,
    history: sqlx::types::Json<Vec<HistoryRow>>,
}

/// A message of the contact's conversation: direction, body, kind, id, seq.
type HistoryRow = (String, Option<String>, String, MessageId, i64);

/// The background agent's turn for `event`: the event (what happened, with the facts) as the
/// message it answers; its lead; the contact (the lead's or the deal's) and their conversation's
/// latest messages as history. `None` when the event is gone or not pending.
pub async fn load_input(
    pool: &PgPool,
    tenant: TenantId,
    event: EventId,
) -> Result<Option<TurnInput>> {
    let mut tx = begin_tenant(pool, tenant).await?;
    let row: Option<EventRow> = sqlx::query_as(concat!(
        "WITH e AS (
             SELECT e.*, coalesce(d.contact_id, l.contact_id) AS contact
             FROM agent_events e
             LEFT JOIN leads l ON l.tenant_id = e.tenant_id AND l.id = e.lead_id
             LEFT JOIN deals d ON d.tenant_id = e.tenant_id AND d.id = e.deal_id
             WHERE e.tenant_id = wasit_current_tenant() AND e.id = $1 AND e.status = 'pending')
         SELECT e.agent, e.kind, e.lead_id, e.deal_id, e.detail, t.slug, t.name,
                c.id AS contact_id, c.display_name, c.locale, v.channel,
                (SELECT jsonb_build_object('id', l.id, 'status', l.status, 'score', l.score,
                                           'qualification', l.qualification)
                   FROM leads l WHERE l.tenant_id = wasit_current_tenant() AND l.id = e.lead_id) AS lead,
                t.settings -> 'llm' AS llm_settings, ",
        crate::usage_sql!(),
        " AS usage,
                (SELECT coalesce(jsonb_agg(jsonb_build_array(h.direction, h.body, h.kind, h.id, h.seq) ORDER BY h.seq), '[]')
                   FROM (SELECT id, seq, direction, body, kind FROM messages
                         WHERE tenant_id = wasit_current_tenant() AND conversation_id = v.id
                         ORDER BY seq DESC LIMIT $2) h) AS history
         FROM e
         JOIN tenants t ON t.id = e.tenant_id
         LEFT JOIN contacts c ON c.tenant_id = e.tenant_id AND c.id = e.contact
         LEFT JOIN conversations v ON v.tenant_id = e.tenant_id AND v.contact_id = e.contact"
    ))
    .bind(event)
    .bind(HISTORY)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let contact = row.contact_id.map(|id| ContactInfo {
        id,
        name: row.display_name,
        locale: row.locale,
    });
    let text = format!(
        "CRM event: {}\n{}",
        row.kind,
        serde_json::to_string_pretty(&row.detail).unwrap_or_default()
    );
    Ok(Some(TurnInput {
        llm: crate::turn::tenant_llm(&row.slug, row.llm_settings.map(|j| j.0), row.usage.0),
        tenant: TenantInfo {
            id: tenant,
            slug: row.slug,
            name: row.name,
        },
        contact,
        // The conversation is read, never written: the event's turn is not one of its turns.
        conversation: None,
        event: Some(EventNote {
            id: event,
            kind: row.kind.clone(),
            lead: row.lead_id,
            deal: row.deal_id,
            detail: row.detail,
        }),
        agent: row.agent,
        history: row
            .history
            .0
            .into_iter()
            .map(|(direction, body, kind, id, seq)| {
                HistoryItem::stored(&direction, body, &kind, id, seq)
            })
            .collect(),
        new_messages: vec![TurnMessage {
            id: MessageId(event.0),
            seq: i64::MAX,
            kind: crate::MessageKind::Event,
            text,
            tokens: None,
        }],
        summary: None,
        lead: row.lead.map(|l| l.0),
        handoff: None,
        handoff_hops: 0,
        turns_without_progress: 0,
        channel: row.channel,
    }))
}

/// Commits a background agent's outcome for its event, in one transaction: each tool action once
/// per (event, call), an escalation as a notification to the tenant's admins, the audited turn,
/// the model usage, and the event done. Replies are dropped: background agents never write to a
/// contact. [`Error::Conflict`] when the event was done already (another process, a rerun).
pub async fn apply(
    pool: &PgPool,
    input: &TurnInput,
    outcome: &TurnOutcome,
    handler: Option<&dyn ActionHandler>,
) -> Result<()> {
    let event = input
        .event
        .as_ref()
        .ok_or_else(|| Error::Invalid("events::apply commits an event's turn".into()))?;
    let mut tx = begin_tenant(pool, input.tenant.id).await?;
    let done = sqlx::query(
        "UPDATE agent_events SET status = 'done', done_at = now(), last_error = NULL
         WHERE tenant_id = wasit_current_tenant() AND id = $1 AND status = 'pending'",
    )
    .bind(event.id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if done == 0 {
        return Err(Error::Conflict("the event was handled already".into()));
    }
    if !outcome.replies.is_empty() {
        tracing::debug!(agent = %input.agent, "a background agent's reply is dropped");
    }
    let ctx = input.action_context();
    let mut call_index = 0;
    for action in &outcome.actions {
        match action {
            TurnAction::Tool(action) => {
                let key = format!("event:{}:{call_index}", event.id);
                crate::turn::apply_tool(&mut tx, handler, ctx, &key, None, call_index, action)
                    .await?;
                call_index += 1;
            }
            TurnAction::Escalate { reason } => {
                notify_admins(
                    &mut tx,
                    event,
                    &format!("event:{}:escalated", event.id),
                    &format!("{} needs a person", input.agent),
                    reason,
                )
                .await?;
            }
            TurnAction::NotifyAdmins {
                key, title, body, ..
            } => notify_admins(&mut tx, event, key, title, body).await?,
            TurnAction::Handoff { to_agent, .. } => {
                tracing::warn!(
                    agent = %input.agent,
                    %to_agent,
                    "a background agent cannot hand off: ignored"
                );
            }
            TurnAction::SendTemplate { template, .. } => {
                tracing::warn!(
                    agent = %input.agent,
                    template,
                    "a background agent never messages a contact: template dropped"
                );
            }
        }
    }
    let record = record::arguments(
        record::Subject::Event(event.id),
        &outcome.audit,
        json!({"event": event.kind, "actions": outcome.actions, "replies_dropped": outcome.replies.len()}),
    )?;
    sqlx::query_with(&format!("SELECT FROM {}", record::CALL), record)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

async fn notify_admins(
    tx: &mut crate::db::TenantTx,
    event: &EventNote,
    key: &str,
    title: &str,
    body: &str,
) -> Result<()> {
    sqlx::query("SELECT wasit_notify_admins_once($1, 'agent_event', $2, left($3, 2000), $4)")
        .bind(key)
        .bind(title)
        .bind(body)
        .bind(json!({"event_id": event.id, "lead_id": event.lead, "deal_id": event.deal}))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Records a failed attempt: the event is due again after a pause that grows with the attempts,
/// or, after [`MAX_ATTEMPTS`], `failed` — and the tenant's admins are told.
pub async fn failed(pool: &PgPool, tenant: TenantId, event: EventId, reason: &str) -> Result<bool> {
    let mut tx = begin_tenant(pool, tenant).await?;
    let given_up: Option<bool> = sqlx::query_scalar(
        "UPDATE agent_events SET last_error = left($2, 2000),
             status = CASE WHEN attempts >= $3 THEN 'failed' ELSE status END,
             next_attempt_at = now() + make_interval(secs => 2 ^ least(attempts, 10))
         WHERE tenant_id = wasit_current_tenant() AND id = $1 AND status = 'pending'
         RETURNING status = 'failed'",
    )
    .bind(event)
    .bind(reason)
    .bind(MAX_ATTEMPTS)
    .fetch_optional(&mut *tx)
    .await?;
    if given_up == Some(true) {
        sqlx::query(
            "SELECT wasit_notify_admins_once($1, 'agent_event',
                 'A background agent could not handle a CRM event', left($2, 2000),
                 jsonb_build_object('event_id', $3::uuid))",
        )
        .bind(format!("event:{event}:failed"))
        .bind(reason)
        .bind(event)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(given_up == Some(true))
}
