//! Actions: what agents do to the CRM. An agent's tool call with side effects becomes a
//! [`ToolAction`]; the [`ActionHandler`] (a trait here, implemented where the CRM lives, in `api`)
//! applies it inside the turn's transaction, once per idempotency key — (conversation, turn, tool
//! call) — so a turn that runs again never applies anything twice.
//!
//! While the model is still deciding, [`Actions::rehearse`] applies the turn's actions so far in a
//! transaction that is rolled back, so the model is told what really would happen (a refused
//! booking, a lead that already exists) and not what it hoped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;

use crate::db::{TenantTx, begin_tenant};
use crate::domain::{AgentKind, Channel};
use crate::ids::{ContactId, ConversationId, DealId, EventId, LeadId, TenantId};

/// A tool call that changes the CRM, with arguments already validated against the tool's schema.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolAction {
    pub tool: String,
    pub arguments: Value,
}

/// Who acts and on what: always from the conversation (or the CRM event a background agent
/// reacts to), never from model output.
#[derive(Debug, Clone, Copy)]
pub struct ActionContext {
    pub tenant: TenantId,
    /// The contact the turn is about: the conversation's, or the event's lead's or deal's.
    pub contact: Option<ContactId>,
    /// The conversation of a conversational turn; `None` for a background agent's event.
    pub conversation: Option<ConversationId>,
    /// The lead and deal a CRM event is about (background agents); `None` in conversations,
    /// where the contact's own are found.
    pub lead: Option<LeadId>,
    pub deal: Option<DealId>,
    /// The CRM event (`agent_events`) a background agent's turn reacts to.
    pub event: Option<EventId>,
    pub agent: AgentKind,
    /// The conversation's channel; `None` for an event whose contact has no conversation.
    pub channel: Option<Channel>,
}

impl ActionContext {
    /// The contact, or why a tool that needs one cannot run.
    pub fn contact(&self) -> Result<ContactId, ActionError> {
        self.contact.ok_or_else(|| {
            ActionError::Refused("this tool needs a contact, and this work has none".into())
        })
    }

    /// The conversation, or why a tool that needs one cannot run.
    pub fn conversation(&self) -> Result<ConversationId, ActionError> {
        self.conversation.ok_or_else(|| {
            ActionError::Refused("this tool works in a conversation, and this is not one".into())
        })
    }
}

/// Why an action was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The action does not fit the CRM's state (no lead yet, the slot is taken): the model is
    /// told why and may try something else.
    #[error("{0}")]
    Refused(String),
    /// The database failed: the turn fails and is retried.
    #[error(transparent)]
    Failed(#[from] crate::Error),
}

pub type ActionFuture<'a> = Pin<Box<dyn Future<Output = Result<Value, ActionError>> + Send + 'a>>;

/// Applies agents' actions to the CRM. Implemented by the `api` crate.
pub trait ActionHandler: Send + Sync + 'static {
    /// Whether it implements `tool` (agents are offered only tools that are).
    fn supports(&self, tool: &str) -> bool;

    /// Applies `action` in `tx` (the turn's transaction, or a rehearsal's) and says what it did,
    /// as JSON for the model and the audit.
    fn apply<'a>(
        &'a self,
        tx: &'a mut TenantTx,
        ctx: ActionContext,
        action: &'a ToolAction,
    ) -> ActionFuture<'a>;

    /// Runs a read-only tool (`find_slots`, `get_affiliate_stats`) at once.
    fn read<'a>(
        &'a self,
        pool: &'a PgPool,
        ctx: ActionContext,
        tool: &'a str,
        arguments: &'a Value,
    ) -> ActionFuture<'a>;
}

/// The action handler and the pool it rehearses on. Cheap to clone.
#[derive(Clone)]
pub struct Actions {
    pub handler: Arc<dyn ActionHandler>,
    pub pool: PgPool,
}

impl std::fmt::Debug for Actions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Actions").finish_non_exhaustive()
    }
}

impl Actions {
    /// Applies `earlier` and then `action` in a transaction that is rolled back, and returns what
    /// `action` would do after them. Nothing is kept.
    pub async fn rehearse(
        &self,
        ctx: ActionContext,
        earlier: &[ToolAction],
        action: &ToolAction,
    ) -> Result<Value, ActionError> {
        let mut tx = begin_tenant(&self.pool, ctx.tenant).await?;
        for done in earlier {
            // An earlier action that would be refused now is left out, as it will be at commit.
            if let Err(ActionError::Failed(e)) = self.handler.apply(&mut tx, ctx, done).await {
                return Err(ActionError::Failed(e));
            }
        }
        let result = self.handler.apply(&mut tx, ctx, action).await;
        tx.rollback().await.map_err(crate::Error::from)?;
        result
    }

    /// Runs a read-only tool.
    pub async fn read(
        &self,
        ctx: ActionContext,
        tool: &str,
        arguments: &Value,
    ) -> Result<Value, ActionError> {
        self.handler.read(&self.pool, ctx, tool, arguments).await
    }
}
