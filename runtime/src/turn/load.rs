//! Loading a conversation's turn input from PostgreSQL in one round trip, and the tenant's model
//! settings and usage every turn checks its caps against.

use serde_json::Value;
use sqlx::PgPool;

use super::{
    ContactInfo, HandoffNote, HistoryItem, LeadInfo, TenantInfo, TenantLlm, TurnInput, TurnMessage,
};
use crate::db::begin_tenant;
use crate::domain::{AgentKind, Channel, MessageKind};
use crate::error::{Error, Result};
use crate::ids::{ContactId, ConversationId, MessageId, TenantId};

/// How many earlier messages (since the rolling summary) a turn loads; the agent then keeps the
/// newest that fit the model's window ([`crate::llm::tokens::fit`]).
pub const HISTORY_LIMIT: i64 = 200;

/// Today's date in UTC, `YYYY-MM-DD`: the day usage is counted in.
pub fn utc_today() -> String {
    let d = time::OffsetDateTime::now_utc().date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// The SQL of a tenant's model usage today and this month (UTC), as a JSON array
/// `[today_tokens, month_tokens, today_cost_micros, month_cost_micros]`; for [`tenant_llm`].
#[macro_export]
#[doc(hidden)]
macro_rules! usage_sql {
    () => {
        "(SELECT jsonb_build_array(
              coalesce(sum(u.tokens_in + u.tokens_out) FILTER (WHERE u.day = d.today), 0),
              coalesce(sum(u.tokens_in + u.tokens_out), 0),
              coalesce(sum(u.cost_micros) FILTER (WHERE u.day = d.today), 0),
              coalesce(sum(u.cost_micros), 0))
           FROM (SELECT (now() AT TIME ZONE 'UTC')::date AS today) d
           LEFT JOIN llm_usage u ON u.tenant_id = wasit_current_tenant()
                AND u.day >= date_trunc('month', d.today)::date AND u.day <= d.today)"
    };
}

/// A tenant's model settings (`tenants.settings.llm`; invalid ones are logged and replaced by the
/// defaults) and its usage as [`usage_sql!`] reads it.
pub fn tenant_llm(slug: &str, settings: Option<Value>, usage: (i64, i64, i64, i64)) -> TenantLlm {
    let settings = match settings {
        None => crate::llm::TenantLlmSettings::default(),
        Some(v) => serde_json::from_value(v).unwrap_or_else(|e| {
            tracing::warn!(tenant = %slug, error = %e, "the tenant's llm settings are invalid; using the defaults");
            crate::llm::TenantLlmSettings::default()
        }),
    };
    let (today_tokens, month_tokens, today_cost_micros, month_cost_micros) = usage;
    TenantLlm {
        settings,
        today_tokens,
        month_tokens,
        today_cost_micros,
        month_cost_micros,
    }
}

/// Why a turn had nothing to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// No unprocessed inbound messages.
    NothingNew,
    /// A human owns the conversation, or it waits for one: no agent runs. The messages were
    /// marked processed (they are the rep's to answer, in the inbox).
    HumanOwns,
}

/// Loads a turn's input: the conversation's unprocessed inbound messages and recent history.
/// `Err(Skip)` inside `Ok` when there is nothing to answer.
pub async fn load_input(
    pool: &PgPool,
    tenant: TenantId,
    conversation: ConversationId,
) -> Result<std::result::Result<TurnInput, Skip>> {
    let mut tx = begin_tenant(pool, tenant).await?;
    // One round trip: the conversation, its unprocessed inbound messages and the history before
    // the first of them.
    let row: Option<InputRow> = sqlx::query_as(concat!(
        "WITH new AS (
             SELECT id, seq, kind, body, token_count, token_encoding FROM messages
             WHERE tenant_id = wasit_current_tenant() AND conversation_id = $1
               AND direction = 'inbound' AND processed_at IS NULL)
         SELECT t.slug, t.name, c.id AS contact_id, c.display_name, c.locale, v.active_agent,
                v.channel, v.handoff_from, v.handoff_reason, v.handoff_hops, v.turns_without_progress,
                (SELECT jsonb_build_object('id', l.id, 'status', l.status, 'score', l.score,
                                           'qualification', l.qualification)
                   FROM leads l WHERE l.tenant_id = wasit_current_tenant() AND l.contact_id = c.id
                   ORDER BY l.created_at DESC LIMIT 1) AS lead,
                v.owner_user_id IS NOT NULL OR v.status = 'escalated' AS human,
                v.summary, t.settings -> 'llm' AS llm_settings,
                (SELECT coalesce(jsonb_agg(jsonb_build_array(n.id, n.seq, n.kind, n.body, n.token_count, n.token_encoding) ORDER BY n.seq), '[]')
                   FROM new n) AS new_messages,
                (SELECT coalesce(jsonb_agg(jsonb_build_array(h.direction, h.body, h.kind, h.id, h.seq, h.token_count, h.token_encoding) ORDER BY h.seq), '[]')
                   FROM (SELECT id, seq, direction, body, kind, token_count, token_encoding FROM messages
                         WHERE tenant_id = wasit_current_tenant() AND conversation_id = $1
                           AND seq < (SELECT coalesce(min(seq), 9223372036854775807) FROM new)
                           AND seq > coalesce(v.summary_through_seq, 0)
                           AND (direction = 'outbound' OR processed_at IS NOT NULL)
                         ORDER BY seq DESC LIMIT $2) h) AS history,
                ",
        crate::usage_sql!(),
        " AS usage
         FROM conversations v
         JOIN contacts c ON c.tenant_id = v.tenant_id AND c.id = v.contact_id
         JOIN tenants t ON t.id = v.tenant_id
         WHERE v.tenant_id = wasit_current_tenant() AND v.id = $1"
    ))
    .bind(conversation)
    .bind(HISTORY_LIMIT)
    .fetch_optional(&mut *tx)
    .await?;
    let row = row.ok_or(Error::NotFound("conversation"))?;
    if row.human {
        // While a human owns the conversation, no agent runs (and no LLM is called).
        let handed = sqlx::query(
            "UPDATE messages SET processed_at = now()
             WHERE tenant_id = wasit_current_tenant() AND conversation_id = $1
               AND direction = 'inbound' AND processed_at IS NULL",
        )
        .bind(conversation)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        return Ok(Err(if handed.rows_affected() > 0 {
            Skip::HumanOwns
        } else {
            Skip::NothingNew
        }));
    }
    tx.commit().await?;
    let sqlx::types::Json(new_rows) = row.new_messages;
    let handoff = row.handoff_from.map(|from| HandoffNote {
        from,
        reason: row.handoff_reason.unwrap_or_default(),
    });
    if new_rows.is_empty() && handoff.is_none() {
        return Ok(Err(Skip::NothingNew));
    }
    let sqlx::types::Json(history) = row.history;
    let llm = tenant_llm(&row.slug, row.llm_settings.map(|j| j.0), row.usage.0);
    Ok(Ok(TurnInput {
        tenant: TenantInfo {
            id: tenant,
            slug: row.slug,
            name: row.name,
        },
        contact: Some(ContactInfo {
            id: row.contact_id,
            name: row.display_name,
            locale: row.locale,
        }),
        conversation: Some(conversation),
        event: None,
        agent: row.active_agent,
        history: history
            .into_iter()
            .map(|(direction, body, kind, id, seq, count, encoding)| {
                HistoryItem::stored(&direction, body, &kind, id, seq)
                    .with_tokens(stored_count(count, encoding))
            })
            .collect(),
        new_messages: new_rows
            .into_iter()
            .map(|(id, seq, kind, body, count, encoding)| TurnMessage {
                id,
                seq,
                text: body.unwrap_or_else(|| format!("[{kind}]")),
                kind,
                tokens: stored_count(count, encoding),
            })
            .collect(),
        summary: row.summary,
        lead: row.lead.map(|sqlx::types::Json(l)| l),
        handoff,
        handoff_hops: u32::try_from(row.handoff_hops).unwrap_or(0),
        turns_without_progress: u32::try_from(row.turns_without_progress).unwrap_or(0),
        channel: Some(row.channel),
        llm,
    }))
}

#[derive(sqlx::FromRow)]
struct InputRow {
    slug: String,
    name: String,
    contact_id: ContactId,
    display_name: Option<String>,
    locale: Option<String>,
    active_agent: AgentKind,
    channel: Channel,
    handoff_from: Option<String>,
    handoff_reason: Option<String>,
    handoff_hops: i16,
    turns_without_progress: i32,
    lead: Option<sqlx::types::Json<LeadInfo>>,
    human: bool,
    /// Each unprocessed inbound message, in order.
    new_messages: sqlx::types::Json<Vec<NewRow>>,
    /// Each earlier message, oldest first.
    history: sqlx::types::Json<Vec<HistoryRow>>,
    summary: Option<String>,
    llm_settings: Option<sqlx::types::Json<Value>>,
    /// `[tokens today, tokens this month, cost today, cost this month]`
    usage: sqlx::types::Json<(i64, i64, i64, i64)>,
}

/// `[id, seq, kind, body, token_count, token_encoding]`
type NewRow = (
    MessageId,
    i64,
    MessageKind,
    Option<String>,
    Option<u32>,
    Option<String>,
);
/// `[direction, body, kind, id, seq, token_count, token_encoding]`
type HistoryRow = (
    String,
    Option<String>,
    String,
    MessageId,
    i64,
    Option<u32>,
    Option<String>,
);

fn stored_count(count: Option<u32>, encoding: Option<String>) -> Option<(u32, String)> {
    count.zip(encoding)
}
