//! A turn: the unit of work of a conversation. Its input is loaded from PostgreSQL ([`load`]), an
//! agent (a [`TurnEngine`], implemented in the `agents` crate) produces an outcome, and
//! [`commit::apply`] commits the whole outcome in one transaction: outbound messages with their
//! outbox rows, state changes, the audit row, and the inbound messages marked processed.
//!
//! Code map:
//! - this module: the contract — [`TurnInput`], [`TurnOutcome`], [`TurnAction`], [`TurnAudit`],
//!   [`TurnError`] — and the traits agents implement ([`TurnEngine`], [`Router`]).
//! - [`policy`]: decisions without I/O — routing a turn, whether a handed-to agent answers at
//!   once, the contact's language, the outcome when the model stays down.
//! - [`load`]: a conversation's turn input in one round trip, and the tenant's model usage.
//! - [`commit`]: [`commit::apply`], and [`commit::plan_outbound`], the pure planning of a turn's
//!   outbound parts (templates first, replies split for the channel, idempotency keys).
//! - [`record`]: the audit row, model usage and prompt version of a turn, recorded by one SQL
//!   function for conversation turns and CRM-event turns alike.
//! - [`dead_letter`]: messages that could not be processed, set aside for a person.

pub mod commit;
pub mod dead_letter;
pub mod load;
pub mod policy;
pub mod record;

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;
use serde_json::Value;

use crate::actions::ActionContext;
use crate::domain::{AgentKind, Channel, MessageKind};
use crate::ids::{ContactId, ConversationId, DealId, EventId, MessageId, TenantId};

pub(crate) use commit::apply_tool;
pub use commit::{Applied, Splitter, apply};
pub use dead_letter::dead_letter;
pub use load::{HISTORY_LIMIT, Skip, load_input, tenant_llm, utc_today};
pub use policy::{
    Language, MAX_HANDOFF_HOPS, answers_at_once, apology, contact_language, route,
    unavailable_outcome,
};

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
    pub kind: MessageKind,
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
    pub agent: AgentKind,
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
    /// The conversation's channel; `None` for a background agent's event whose contact has no
    /// conversation.
    pub channel: Option<Channel>,
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
    pub id: EventId,
    pub kind: String,
    #[serde(skip)]
    pub lead: Option<crate::LeadId>,
    #[serde(skip)]
    pub deal: Option<DealId>,
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
    pub fn action_context(&self) -> ActionContext {
        ActionContext {
            tenant: self.tenant.id,
            contact: self.contact.as_ref().map(|c| c.id),
            conversation: self.conversation,
            lead: self.event.as_ref().and_then(|e| e.lead),
            deal: self.event.as_ref().and_then(|e| e.deal),
            event: self.event.as_ref().map(|e| e.id),
            agent: self.agent,
            channel: self.channel,
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
    Handoff { to_agent: AgentKind, reason: String },
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
    pub agent: AgentKind,
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
    pub agent: AgentKind,
    pub reason: String,
}
