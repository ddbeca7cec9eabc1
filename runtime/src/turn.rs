//! A turn: the unit of work of a conversation. Its input is loaded from PostgreSQL, an agent
//! (a [`TurnEngine`], implemented in the `agents` crate) produces an outcome, and [`apply`]
//! commits the whole outcome in one transaction: outbound messages with their outbox rows, state
//! changes, the audit row, and the inbound messages marked processed.

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::actions::{ActionContext, ActionError, ActionHandler, ToolAction};
use crate::db::begin_tenant;
use crate::error::{Error, Result};
use crate::ids::{ContactId, ConversationId, MessageId, TenantId};
use crate::outbox::{ChannelAccount, Claimed};

/// How many earlier messages (since the rolling summary) a turn loads; the agent then keeps the
/// newest that fit the model's window ([`crate::llm::tokens::fit`]).
pub const HISTORY_LIMIT: i64 = 200;

#[derive(Debug, Clone, Serialize)]
pub struct TenantInfo {
    pub id: TenantId,
    pub slug: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContactInfo {
    pub id: ContactId,
    pub name: Option<String>,
    pub locale: Option<String>,
}

/// Who said something in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    Contact,
    Agent,
}

#[derive(Debug, Clone, Serialize)]
pub struct HistoryItem {
    #[serde(skip)]
    pub id: MessageId,
    #[serde(skip)]
    pub seq: i64,
    pub role: Speaker,
    pub text: String,
    /// The stored token count and the encoding it was counted with.
    #[serde(skip)]
    pub tokens: Option<(u32, String)>,
}

impl HistoryItem {
    /// A stored message as history: `inbound` ones are the contact's; one without a body reads
    /// as its kind in brackets (`[image]`).
    pub fn stored(
        direction: &str,
        body: Option<String>,
        kind: &str,
        id: MessageId,
        seq: i64,
    ) -> Self {
        Self {
            id,
            seq,
            role: if direction == "inbound" {
                Speaker::Contact
            } else {
                Speaker::Agent
            },
            text: body.unwrap_or_else(|| format!("[{kind}]")),
            tokens: None,
        }
    }

    #[must_use]
    pub fn with_tokens(mut self, tokens: Option<(u32, String)>) -> Self {
        self.tokens = tokens;
        self
    }
}

/// A message the turn answers.
#[derive(Debug, Clone, Serialize)]
pub struct TurnMessage {
    pub id: MessageId,
    pub seq: i64,
    pub kind: String,
    pub text: String,
    #[serde(skip)]
    pub tokens: Option<(u32, String)>,
}

/// The tenant's model settings and what it has used today and this month (UTC).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TenantLlm {
    pub settings: crate::llm::TenantLlmSettings,
    pub today_tokens: i64,
    pub month_tokens: i64,
    pub today_cost_micros: i64,
    pub month_cost_micros: i64,
}

/// Everything an agent needs for one turn. The tenant and contact come from here, never from
/// model output.
#[derive(Debug, Clone, Serialize)]
pub struct TurnInput {
    pub tenant: TenantInfo,
    /// The contact: the conversation's, or the one a CRM event's lead or deal belongs to (a
    /// background agent's event may have none).
    pub contact: Option<ContactInfo>,
    /// `None` for a background agent's turn on a CRM event ([`crate::events`]).
    pub conversation: Option<ConversationId>,
    /// The CRM event a background agent's turn reacts to; `None` in conversations.
    pub event: Option<EventNote>,
    pub agent: String,
    /// Earlier messages, oldest first, not including `new_messages`.
    pub history: Vec<HistoryItem>,
    /// The unprocessed inbound messages, in arrival order.
    pub new_messages: Vec<TurnMessage>,
    /// The rolling summary of history older than `history`.
    pub summary: Option<String>,
    /// The contact's latest lead, if any.
    pub lead: Option<LeadInfo>,
    /// Set when another agent handed the conversation to this one and it has not answered yet.
    pub handoff: Option<HandoffNote>,
    /// Handoffs since the contact last wrote.
    #[serde(skip)]
    pub handoff_hops: u32,
    /// Turns in a row that changed nothing (no action, no handoff).
    pub turns_without_progress: u32,
    /// The conversation's channel (`whatsapp`, `sms`, `email`).
    pub channel: String,
    #[serde(skip)]
    pub llm: TenantLlm,
}

/// The contact's lead as an agent sees it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct LeadInfo {
    pub id: crate::LeadId,
    pub status: String,
    pub score: Option<i16>,
    /// What has been learnt so far (company, need, budget, …).
    pub qualification: Value,
}

/// The CRM event a background agent reacts to: what happened, to which lead or deal.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EventNote {
    pub id: uuid::Uuid,
    pub kind: String,
    #[serde(skip)]
    pub lead: Option<crate::LeadId>,
    #[serde(skip)]
    pub deal: Option<uuid::Uuid>,
    /// The facts of the event (the lead's or deal's fields, the change), as the agent reads them.
    pub detail: Value,
}

/// Why the current agent has the conversation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HandoffNote {
    pub from: String,
    pub reason: String,
}

impl TurnInput {
    /// True when the turn answers messages from the contact (not only a handoff).
    pub fn has_new_messages(&self) -> bool {
        !self.new_messages.is_empty()
    }

    /// Who acts and on what, for this turn's tools: all from the input, nothing from the model.
    pub fn action_context(&self) -> ActionContext<'_> {
        ActionContext {
            tenant: self.tenant.id,
            contact: self.contact.as_ref().map(|c| c.id),
            conversation: self.conversation,
            lead: self.event.as_ref().and_then(|e| e.lead),
            deal: self.event.as_ref().and_then(|e| e.deal),
            event: self.event.as_ref().map(|e| e.id),
            agent: &self.agent,
            channel: &self.channel,
        }
    }
}

/// State changes a turn asks for, applied in the turn's transaction.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum TurnAction {
    /// Hand the conversation to a human; no agent answers until a rep hands it back.
    Escalate { reason: String },
    /// Another agent takes the conversation; it answers at once, in a turn of its own.
    Handoff { to_agent: String, reason: String },
    /// A change to the CRM through the action handler, applied once per (conversation, turn,
    /// call).
    Tool(crate::actions::ToolAction),
    /// Sends an approved WhatsApp template (the only message allowed outside the 24-hour
    /// window), before the turn's replies.
    SendTemplate {
        template: String,
        language: String,
        parameters: Vec<String>,
    },
    /// Tells the tenant's admins, once per `key` (e.g. a budget reached today).
    NotifyAdmins {
        key: String,
        kind: String,
        title: String,
        body: String,
    },
}

/// The audit of one turn, as stored in `ai_conversations`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TurnAudit {
    pub agent: String,
    pub prompt_version: String,
    /// The prompt file, relative to the prompts directory, and its bytes: recorded once per
    /// version in `prompt_versions`.
    #[serde(skip)]
    pub prompt_path: String,
    #[serde(skip)]
    pub prompt_body: Option<String>,
    pub model: String,
    pub tokens_in: u32,
    pub tokens_out: u32,
    /// Model calls the turn made, and their cost in millionths of a dollar.
    pub calls: u32,
    pub cost_micros: i64,
    pub latency_ms: u32,
    /// Each tool call with its arguments and result.
    pub tool_calls: Value,
}

#[derive(Debug, Clone, Default)]
pub struct TurnOutcome {
    /// Texts to send to the contact, in order.
    pub replies: Vec<String>,
    pub actions: Vec<TurnAction>,
    pub audit: TurnAudit,
    /// Token counts of messages counted in this turn, stored so no later turn counts them again.
    pub token_counts: Vec<(MessageId, u32)>,
    /// The encoding of `token_counts`.
    pub token_encoding: String,
    /// A new rolling summary: it covers every message up to `through_seq`.
    pub summary: Option<SummaryUpdate>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryUpdate {
    pub text: String,
    pub through_seq: i64,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum TurnError {
    /// Worth retrying later (the model timed out, was rate limited, was down).
    #[error("temporary: {0}")]
    Temporary(String),
    /// Retrying the same input will fail the same way.
    #[error("permanent: {0}")]
    Permanent(String),
    /// Something the turn needs is not configured (no LLM): not a failure of this conversation.
    /// The messages stay unprocessed in PostgreSQL and are taken up again at the next start.
    #[error("not ready: {0}")]
    NotReady(String),
}

/// Produces a turn's outcome. Implemented by the agents; must be cancel-safe (a superseded
/// generation is dropped mid-flight) and have no side effects outside the returned outcome.
pub trait TurnEngine: Send + Sync + 'static {
    fn run(
        &self,
        input: TurnInput,
    ) -> Pin<Box<dyn Future<Output = std::result::Result<TurnOutcome, TurnError>> + Send>>;
}

/// Picks the agent for a turn. Implemented by the `agents` crate.
pub trait Router: Send + Sync + 'static {
    /// The agent that should answer `input` instead of its active agent, and why; `None` keeps
    /// the active agent.
    fn route(&self, input: &TurnInput) -> Option<Route>;
}

/// The agent a turn goes to, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub agent: String,
    pub reason: String,
}

/// Routes `input` with `router`: the chosen agent answers, and `input.handoff` tells it why it has
/// the conversation (`from` is the agent it was taken from).
pub fn route(router: &dyn Router, input: &mut TurnInput) {
    if let Some(Route { agent: to, reason }) = router.route(input)
        && to != input.agent
    {
        tracing::debug!(conversation = ?input.conversation, from = input.agent, to, reason, "routed");
        let from = std::mem::replace(&mut input.agent, to);
        input.handoff.get_or_insert(HandoffNote { from, reason });
    }
}

/// Handoffs in a row (without the contact writing) after which the next agent waits for the
/// contact instead of answering at once.
pub const MAX_HANDOFF_HOPS: u32 = 3;

/// Whether the agent `outcome` handed the conversation to answers now, in a turn of its own: yes,
/// unless the chain of agents passing the conversation on is already long, when it waits for the
/// contact. A person is never kept waiting: a handoff to the escalation agent always runs.
pub fn answers_at_once(input: &TurnInput, outcome: &TurnOutcome) -> bool {
    let handed_to = outcome.actions.iter().find_map(|a| match a {
        TurnAction::Handoff { to_agent, .. } => Some(to_agent.as_str()),
        _ => None,
    });
    let hops = if input.has_new_messages() {
        0
    } else {
        input.handoff_hops
    };
    handed_to.is_some_and(|to| hops < MAX_HANDOFF_HOPS || to == "escalation")
}

/// Today's date in UTC, `YYYY-MM-DD`: the day usage is counted in.
pub fn utc_today() -> String {
    let d = time::OffsetDateTime::now_utc().date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// The language a contact writes in, for the runtime's own messages (apologies, budget notes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Arabic,
    English,
}

/// Arabic when the contact's new messages contain Arabic letters, or contain no Latin letters and
/// the contact's locale is Arabic; English otherwise.
pub fn contact_language(input: &TurnInput) -> Language {
    let arabic = |c: char| matches!(c, '\u{0600}'..='\u{06FF}' | '\u{0750}'..='\u{077F}' | '\u{FB50}'..='\u{FDFF}' | '\u{FE70}'..='\u{FEFF}');
    let texts = || input.new_messages.iter().map(|m| m.text.as_str());
    let locale_ar = input
        .contact
        .as_ref()
        .and_then(|c| c.locale.as_deref())
        .is_some_and(|l| l.to_ascii_lowercase().starts_with("ar"));
    if texts().any(|t| t.chars().any(arabic))
        || (locale_ar && !texts().any(|t| t.chars().any(|c| c.is_ascii_alphabetic())))
    {
        Language::Arabic
    } else {
        Language::English
    }
}

/// The apology sent when the model stayed unavailable past every retry.
pub fn apology(language: Language) -> &'static str {
    match language {
        Language::Arabic => "نعتذر منك، نواجه مشكلة تقنية مؤقتة. سيتواصل معك أحد زملائنا قريبًا.",
        Language::English => {
            "We are sorry: we have a temporary technical problem. A colleague will get back to you shortly."
        }
    }
}

/// The outcome of a turn whose model calls kept failing: an apology in the contact's language
/// and the conversation handed to a human, so the messages are answered, not lost or dropped.
pub fn unavailable_outcome(input: &TurnInput, reason: &str) -> TurnOutcome {
    TurnOutcome {
        replies: vec![apology(contact_language(input)).to_owned()],
        actions: vec![TurnAction::Escalate {
            reason: format!("the language model stayed unavailable after every retry: {reason}"),
        }],
        audit: TurnAudit {
            agent: input.agent.clone(),
            model: "none".into(),
            tool_calls: json!([{"fallback": "model_unavailable", "error": reason}]),
            ..TurnAudit::default()
        },
        ..TurnOutcome::default()
    }
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
        channel: row.channel,
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
    active_agent: String,
    channel: String,
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
    String,
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

/// What [`apply`] committed.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub turn_seq: i64,
    pub outbound: usize,
    /// The reply was not sent because a human owns the conversation (or it was escalated).
    pub suppressed: bool,
    /// Outbox rows committed claimed by the caller, to send now ([`crate::outbox::send_claimed`]).
    pub claimed: Vec<Claimed>,
    /// Outbox rows committed for the sweeps (something earlier of the conversation is pending).
    pub queued: bool,
}

/// Splits a reply for a channel's length limit, in characters.
pub type Splitter = fn(&str) -> Vec<String>;

/// Commits a turn's outcome in one transaction. `answered` are the inbound messages the turn
/// saw; only they are marked processed, so anything that arrived since gets a turn of its own.
///
/// With `claim` (a lease), the outbox rows are committed claimed by the caller for that long when
/// nothing earlier of the conversation waits to be sent, and returned in [`Applied::claimed`]:
/// the caller sends them at once. If it dies first, the sweeps send them when the lease ends.
pub async fn apply(
    pool: &PgPool,
    input: &TurnInput,
    outcome: &TurnOutcome,
    split: Splitter,
    claim: Option<std::time::Duration>,
    handler: Option<&dyn ActionHandler>,
) -> Result<Applied> {
    let conversation = input.conversation.ok_or_else(|| {
        Error::Invalid("a turn without a conversation is committed by events::apply".into())
    })?;
    let mut tx = begin_tenant(pool, input.tenant.id).await?;
    let answered: Vec<MessageId> = input.new_messages.iter().map(|m| m.id).collect();
    let progress = !outcome.actions.is_empty();
    // The row lock serialises turns of one conversation even across nodes; the same statement
    // marks the answered messages processed, takes up a pending handoff, and fetches where
    // replies go.
    let row: ApplyRow = sqlx::query_as(
        "WITH conv AS (
             UPDATE conversations v SET turn_seq = v.turn_seq + 1, updated_at = now(),
                 active_agent = $5, handoff_from = NULL, handoff_reason = NULL,
                 handoff_hops = CASE WHEN cardinality($2::uuid[]) > 0 THEN 0 ELSE v.handoff_hops END,
                 turns_without_progress = CASE WHEN $4 THEN 0 ELSE v.turns_without_progress + 1 END
             FROM (SELECT handoff_from FROM conversations
                   WHERE tenant_id = wasit_current_tenant() AND id = $1 FOR UPDATE) old
             WHERE v.tenant_id = wasit_current_tenant() AND v.id = $1
             RETURNING v.turn_seq, v.owner_user_id, v.status, v.channel, v.channel_account_id,
                       v.contact_id, old.handoff_from IS NOT NULL AS handoff_pending),
         marked AS (
             UPDATE messages SET processed_at = now()
             WHERE tenant_id = wasit_current_tenant() AND id = ANY($2) AND processed_at IS NULL
             RETURNING id),
         -- The contact wrote: a follow-up waiting for them is not needed (the turn may schedule
         -- another).
         cancelled AS (
             UPDATE follow_ups SET status = 'cancelled', done_at = now()
             WHERE tenant_id = wasit_current_tenant() AND conversation_id = $1 AND status = 'pending'
               AND cardinality($2::uuid[]) > 0)
         SELECT conv.turn_seq, conv.owner_user_id, conv.status, conv.channel, conv.handoff_pending,
                (SELECT count(*) FROM marked) AS marked,
                (SELECT provider_message_id FROM messages
                  WHERE tenant_id = wasit_current_tenant() AND id = $3) AS reply_to,
                (SELECT i.kind || ':' || i.value FROM contact_identities i
                  WHERE i.tenant_id = wasit_current_tenant() AND i.contact_id = conv.contact_id
                    AND i.kind = ANY(CASE conv.channel WHEN 'whatsapp' THEN ARRAY['phone', 'whatsapp_bsuid']
                                                       WHEN 'sms' THEN ARRAY['phone']
                                                       WHEN 'chat' THEN ARRAY['chat'] ELSE ARRAY['email'] END)
                  ORDER BY array_position(ARRAY['phone', 'whatsapp_bsuid', 'email', 'chat'], i.kind) LIMIT 1) AS identity,
                EXISTS (SELECT 1 FROM outbox o
                  WHERE o.tenant_id = wasit_current_tenant() AND o.conversation_id = $1
                    AND o.state = 'pending') AS earlier_pending,
                a.id AS account_id, a.address AS account_address, a.credentials AS account_credentials
         FROM conv LEFT JOIN LATERAL (
             SELECT id, address, credentials FROM channel_accounts
             WHERE tenant_id = wasit_current_tenant() AND channel = conv.channel
               AND (conv.channel_account_id IS NULL OR id = conv.channel_account_id)
             ORDER BY created_at LIMIT 1) a ON true",
    )
    .bind(conversation)
    .bind(&answered)
    .bind(answered.last())
    .bind(progress)
    .bind(&input.agent)
    .fetch_one(&mut *tx)
    .await?;
    let ApplyRow {
        turn_seq,
        owner_user_id: owner,
        status,
        channel,
        handoff_pending,
        marked,
        reply_to,
        identity,
        earlier_pending,
        account_id,
        account_address,
        account_credentials,
    } = row;
    if usize::try_from(marked).ok() != Some(answered.len()) {
        // Another turn (another node, a recovered rerun, an actor of a merged contact) answered
        // some of these already: roll back rather than answer anything twice.
        return Err(Error::Conflict(
            "these messages were answered by another turn".into(),
        ));
    }
    if answered.is_empty() && !handoff_pending {
        // A turn for a handoff that another turn has taken up already.
        return Err(Error::Conflict(
            "the handoff was answered by another turn".into(),
        ));
    }

    // While a human owns the conversation (or it waits for one), no agent sends anything.
    let suppressed = owner.is_some() || status == "escalated";
    let mut parts = Vec::new();
    if !suppressed {
        let recipient = recipient(identity.as_deref(), &channel)?;
        // Templates first: outside the 24-hour window they are what reopens it.
        let templates = outcome.actions.iter().filter_map(|a| match a {
            TurnAction::SendTemplate {
                template,
                language,
                parameters,
            } => Some((
                "template",
                format!("[{template}] {}", parameters.join(" | ")),
                json!({
                    "type": "template",
                    "to": recipient,
                    "template": {"name": template, "language": language, "parameters": parameters},
                    "channel_account_id": account_id,
                }),
            )),
            _ => None,
        });
        let texts = outcome
            .replies
            .iter()
            .flat_map(|r| split(r))
            .filter(|p| !p.trim().is_empty())
            .enumerate()
            .map(|(i, body)| {
                let payload = json!({
                    "type": "text",
                    "to": recipient,
                    "body": body,
                    "channel_account_id": account_id,
                    "reply_to": if i == 0 { reply_to.clone() } else { None },
                });
                ("text", body, payload)
            });
        for (i, (kind, body, payload)) in templates.chain(texts).enumerate() {
            parts.push(Part {
                message: MessageId(uuid::Uuid::new_v4()),
                number: i32::try_from(i).unwrap_or(i32::MAX),
                key: format!("{conversation}:{turn_seq}:{i}"),
                kind,
                body,
                payload,
            });
        }
    }
    let ctx = ActionContext {
        channel: &channel,
        ..input.action_context()
    };
    let mut call_index = 0;
    for action in &outcome.actions {
        match action {
            TurnAction::Tool(action) => {
                let index = call_index;
                call_index += 1;
                let key = format!("{conversation}:{turn_seq}:{index}");
                apply_tool(&mut tx, handler, ctx, &key, Some(turn_seq), index, action).await?;
            }
            TurnAction::Escalate { reason } => {
                sqlx::query(
                    "UPDATE conversations SET status = 'escalated', needs_human = true, updated_at = now(),
                         escalated_from = coalesce(escalated_from, $2)
                     WHERE tenant_id = wasit_current_tenant() AND id = $1",
                )
                .bind(conversation)
                .bind(&input.agent)
                .execute(&mut *tx)
                .await?;
                // The people who can take it over hear about it, in the same transaction.
                sqlx::query("SELECT wasit_notify_escalation($1, $2)")
                    .bind(conversation)
                    .bind(reason)
                    .execute(&mut *tx)
                    .await?;
                tracing::info!(%conversation, reason, "conversation escalated to a human");
            }
            TurnAction::Handoff { to_agent, reason } => {
                // The next agent answers in a turn of its own, seeing why it got the conversation.
                sqlx::query(
                    "UPDATE conversations SET active_agent = $2, handoff_from = $3, handoff_reason = left($4, 2000),
                         handoff_hops = handoff_hops + 1,
                         escalated_from = CASE WHEN $2 = 'escalation' THEN $3 ELSE escalated_from END
                     WHERE tenant_id = wasit_current_tenant() AND id = $1",
                )
                .bind(conversation)
                .bind(to_agent)
                .bind(&input.agent)
                .bind(reason)
                .execute(&mut *tx)
                .await?;
            }
            TurnAction::NotifyAdmins {
                key,
                kind,
                title,
                body,
            } => {
                sqlx::query("SELECT wasit_notify_admins_once($1, $2, $3, $4, $5)")
                    .bind(key)
                    .bind(kind)
                    .bind(title)
                    .bind(body)
                    .bind(json!({"conversation_id": conversation}))
                    .execute(&mut *tx)
                    .await?;
            }
            // Sent with the replies (above).
            TurnAction::SendTemplate { .. } => {}
        }
    }
    // The fast path: when nothing earlier of this conversation is waiting to be sent, the rows
    // are committed already claimed by this process, which sends them right after the commit.
    // Otherwise the sweeps send them, in order, after what is waiting.
    let lease = claim.filter(|_| !earlier_pending);
    let outbound = parts.len();
    // The outbound messages, their outbox rows and the audit row: one statement.
    let a = &outcome.audit;
    let inserted: Vec<(uuid::Uuid, i32, MessageId)> = sqlx::query_as(
        "WITH part AS (
             SELECT * FROM unnest($11::uuid[], $12::int[], $13::text[], $14::text[], $15::jsonb[], $27::text[])
                 AS p(message_id, number, key, body, payload, kind)),
         message AS (
             INSERT INTO messages (id, tenant_id, conversation_id, direction, channel, kind, body, status, processed_at)
             SELECT p.message_id, wasit_current_tenant(), $1, 'outbound', $16, p.kind, p.body, 'queued', now()
             FROM part p ORDER BY p.number
             RETURNING id),
         audit AS (
             INSERT INTO ai_conversations (tenant_id, conversation_id, turn_seq, agent, prompt_version, model,
                                           tokens_in, tokens_out, latency_ms, tool_calls, outcome)
             VALUES (wasit_current_tenant(), $1, $2, $3, $4, $5, $6, $7, $8, $9, $10)),
         counted AS (
             UPDATE messages m SET token_count = c.n, token_encoding = $19
             FROM unnest($18::uuid[], $20::int[]) AS c(id, n)
             WHERE m.tenant_id = wasit_current_tenant() AND m.id = c.id),
         usage AS (
             INSERT INTO llm_usage AS u (tenant_id, day, agent, model, shard, calls, tokens_in, tokens_out, cost_micros)
             SELECT wasit_current_tenant(), (now() AT TIME ZONE 'UTC')::date, $3, $5,
                    floor(random() * 16)::smallint, $21, $6, $7, $22
             WHERE $21 > 0
             ON CONFLICT (tenant_id, day, agent, model, shard) DO UPDATE
                 SET calls = u.calls + excluded.calls, tokens_in = u.tokens_in + excluded.tokens_in,
                     tokens_out = u.tokens_out + excluded.tokens_out,
                     cost_micros = u.cost_micros + excluded.cost_micros),
         summarised AS (
             UPDATE conversations SET summary = $23, summary_through_seq = $24
             WHERE tenant_id = wasit_current_tenant() AND id = $1 AND $24::bigint IS NOT NULL),
         prompt AS (
             INSERT INTO prompt_versions (tenant_id, version, agent, path, body)
             SELECT wasit_current_tenant(), $4, $3, $25, $26 WHERE $26::text IS NOT NULL
             ON CONFLICT (tenant_id, version) DO NOTHING)
         INSERT INTO outbox (tenant_id, message_id, channel, idempotency_key, payload,
                             conversation_id, turn_seq, part, attempts, next_attempt_at)
         SELECT wasit_current_tenant(), m.id, $16, p.key, p.payload, $1, $2, p.number,
                CASE WHEN $17::float8 IS NULL THEN 0 ELSE 1 END,
                now() + make_interval(secs => coalesce($17::float8, 0))
         FROM part p JOIN message m ON m.id = p.message_id
         ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
         RETURNING id, attempts, message_id",
    )
    .bind(conversation)
    .bind(turn_seq)
    .bind(&a.agent)
    .bind(&a.prompt_version)
    .bind(&a.model)
    .bind(i32::try_from(a.tokens_in).unwrap_or(i32::MAX))
    .bind(i32::try_from(a.tokens_out).unwrap_or(i32::MAX))
    .bind(i32::try_from(a.latency_ms).unwrap_or(i32::MAX))
    .bind(&a.tool_calls)
    .bind(json!({
        "replies": outcome.replies.len(),
        "outbound_messages": outbound,
        "suppressed": suppressed,
        "actions": outcome.actions,
        "answered": answered,
    }))
    .bind(parts.iter().map(|p| p.message.0).collect::<Vec<_>>())
    .bind(parts.iter().map(|p| p.number).collect::<Vec<_>>())
    .bind(parts.iter().map(|p| p.key.as_str()).collect::<Vec<_>>())
    .bind(parts.iter().map(|p| p.body.as_str()).collect::<Vec<_>>())
    .bind(parts.iter().map(|p| &p.payload).collect::<Vec<_>>())
    .bind(&channel)
    .bind(lease.map(|l| l.as_secs_f64()))
    .bind(outcome.token_counts.iter().map(|(id, _)| id.0).collect::<Vec<_>>())
    .bind(&outcome.token_encoding)
    .bind(
        outcome
            .token_counts
            .iter()
            .map(|(_, n)| i32::try_from(*n).unwrap_or(i32::MAX))
            .collect::<Vec<_>>(),
    )
    .bind(i64::from(a.calls))
    .bind(a.cost_micros)
    .bind(outcome.summary.as_ref().map(|s| s.text.as_str()))
    .bind(outcome.summary.as_ref().map(|s| s.through_seq))
    .bind(&a.prompt_path)
    .bind(a.prompt_body.as_deref())
    .bind(parts.iter().map(|p| p.kind).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;
    let queued = lease.is_none() && !inserted.is_empty();
    let mut claimed = Vec::new();
    if lease.is_some() {
        let account = ChannelAccount::from_row(account_id, account_address, account_credentials);
        for part in parts {
            if let Some((id, attempts, _)) = inserted.iter().find(|(.., m)| *m == part.message) {
                claimed.push(Claimed {
                    tenant: input.tenant.id,
                    id: *id,
                    channel: channel.clone(),
                    payload: part.payload,
                    attempts: *attempts,
                    message: Some(part.message),
                    key: part.key,
                    account: account.clone(),
                });
            }
        }
    }
    tx.commit().await?;
    Ok(Applied {
        turn_seq,
        outbound,
        suppressed,
        claimed,
        queued,
    })
}

/// Applies one tool action, unless its idempotency key — (conversation, turn, call), or (event,
/// call) — shows it was applied already, and records it in `agent_actions`.
pub(crate) async fn apply_tool(
    tx: &mut crate::db::TenantTx,
    handler: Option<&dyn ActionHandler>,
    ctx: ActionContext<'_>,
    key: &str,
    turn_seq: Option<i64>,
    index: i32,
    action: &ToolAction,
) -> Result<()> {
    let handler = handler.ok_or_else(|| {
        Error::Config(format!(
            "the turn asks for {} but the runtime has no action handler",
            action.tool
        ))
    })?;
    let fresh: Option<uuid::Uuid> = sqlx::query_scalar(
        "INSERT INTO agent_actions (tenant_id, conversation_id, turn_seq, call_index, idempotency_key, agent, tool, arguments, event_id)
         VALUES (wasit_current_tenant(), $1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (tenant_id, idempotency_key) DO NOTHING RETURNING id",
    )
    .bind(ctx.conversation)
    .bind(turn_seq)
    .bind(index)
    .bind(key)
    .bind(ctx.agent)
    .bind(&action.tool)
    .bind(&action.arguments)
    .bind(ctx.event)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(id) = fresh else {
        tracing::info!(
            key,
            tool = action.tool,
            "action applied before: not applied again"
        );
        return Ok(());
    };
    let result = match handler.apply(tx, ctx, action).await {
        Ok(result) => result,
        // It passed its rehearsal: the CRM changed since. The turn runs again and the model sees
        // the CRM as it is now.
        Err(ActionError::Refused(reason)) => {
            return Err(Error::Unavailable(format!(
                "{} was refused at commit: {reason}",
                action.tool
            )));
        }
        Err(ActionError::Failed(e)) => return Err(e),
    };
    sqlx::query(
        "UPDATE agent_actions SET result = $2 WHERE tenant_id = wasit_current_tenant() AND id = $1",
    )
    .bind(id)
    .bind(&result)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One outbound message of a turn, before it is stored.
struct Part {
    message: MessageId,
    number: i32,
    key: String,
    /// `text`, or `template`.
    kind: &'static str,
    body: String,
    payload: Value,
}

#[derive(sqlx::FromRow)]
struct ApplyRow {
    turn_seq: i64,
    owner_user_id: Option<uuid::Uuid>,
    status: String,
    channel: String,
    handoff_pending: bool,
    marked: i64,
    reply_to: Option<String>,
    identity: Option<String>,
    earlier_pending: bool,
    account_id: Option<uuid::Uuid>,
    account_address: Option<String>,
    account_credentials: Option<Value>,
}

/// Where replies go, from the contact's best identity for the channel (`kind:value`): for
/// WhatsApp the phone's digits, else the BSUID; for SMS the phone; for email the address; for
/// `wasit chat` the contact's name.
fn recipient(identity: Option<&str>, channel: &str) -> Result<String> {
    let (kind, value) = identity
        .and_then(|i| i.split_once(':'))
        .ok_or_else(|| Error::Invalid(format!("the contact has no {channel} identity")))?;
    Ok(if kind == "phone" && channel == "whatsapp" {
        value.trim_start_matches('+').to_owned()
    } else {
        value.to_owned()
    })
}

/// Records a message that could not be processed (it crashed its conversation repeatedly, or the
/// agent kept failing): a dead letter, the message marked processed so it does not block the
/// conversation, and the conversation flagged for a human.
pub async fn dead_letter(
    pool: &PgPool,
    tenant: TenantId,
    conversation: ConversationId,
    reason: &str,
    attempts: i32,
) -> Result<usize> {
    let mut tx = begin_tenant(pool, tenant).await?;
    let rows = sqlx::query(
        "WITH stuck AS (
             UPDATE messages SET processed_at = now()
             WHERE tenant_id = wasit_current_tenant() AND conversation_id = $1
               AND direction = 'inbound' AND processed_at IS NULL
             RETURNING id, seq, body, kind)
         INSERT INTO dead_letters (tenant_id, conversation_id, message_id, source, reason, attempts, payload)
         SELECT wasit_current_tenant(), $1, id, 'conversation', $2, $3, jsonb_build_object('seq', seq, 'kind', kind, 'body', body)
         FROM stuck",
    )
    .bind(conversation)
    .bind(reason)
    .bind(attempts)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query(
        "UPDATE conversations SET needs_human = true, status = 'escalated', updated_at = now()
         WHERE tenant_id = wasit_current_tenant() AND id = $1",
    )
    .bind(conversation)
    .execute(&mut *tx)
    .await?;
    sqlx::query("SELECT wasit_notify_escalation($1, $2)")
        .bind(conversation)
        .bind(format!("messages could not be processed: {reason}"))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(usize::try_from(rows).unwrap_or(0))
}
