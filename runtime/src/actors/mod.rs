//! The actor runtime (ractor). The tree:
//!
//! ```text
//! RootSupervisor
//! ├── ConversationSupervisor ── ConversationActor{tenant, contact}  (spawned on demand, passivated when idle)
//! ├── AgentSupervisor ── AgentPool{kind} ── AgentWorker × N          (one pool per agent kind)
//! ├── ChannelSupervisor ── ChannelActor{channel}                     (WhatsAppChannel: pacing, sending)
//! ├── OutboxDispatcher                                               (sends committed outbox rows)
//! └── EventDispatcher                                                (background agents on CRM events)
//! ```
//!
//! Restart policies, written where they are implemented and summarised in
//! `docs/runtime-semantics.md`:
//! - RootSupervisor: a failed child is started again; a new ConversationSupervisor re-reads every
//!   conversation with unprocessed messages from PostgreSQL.
//! - ConversationSupervisor: a failed conversation actor is started again and reruns its turn from
//!   PostgreSQL; the third failure in a row dead-letters the conversation's unprocessed messages
//!   and flags it for a human.
//! - AgentSupervisor / AgentPool: a failed worker is replaced; its caller sees the failure.
//! - ChannelSupervisor: a failed channel actor is started again with fresh pacing state.
//!
//! [`Runtime`] is the handle the rest of the program uses: deliver new messages, wake the outbox,
//! shut down.

mod agents;
mod channels;
mod conversation;
mod conversations;
mod events;
mod outbox;
mod root;
mod shared;

use std::sync::Arc;
use std::time::Duration;

use ractor::{ActorId, SupervisionEvent};

pub use agents::AgentsHandle;
pub use channels::Pacing;
pub use root::Runtime;

use crate::outbox::{OutboxConfig, Senders};
use crate::turn::{Splitter, TurnEngine};

/// Tunables of the conversation runtime.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// A burst of messages within this window is answered in one turn.
    pub debounce: Duration,
    /// A conversation actor idle this long is stopped; its state is in PostgreSQL.
    pub idle_timeout: Duration,
    /// Failures (crashes or failed turns) in a row before a conversation's messages are
    /// dead-lettered and a human is asked to look.
    pub max_failures: u32,
    /// Pause before retrying a turn that failed for a temporary reason.
    pub retry_delay: Duration,
    /// Workers per agent kind.
    pub workers_per_agent: usize,
    /// Turns that may run at once across all conversations; the rest wait their turn instead of
    /// crowding the database pool (and timing out).
    pub max_concurrent_turns: usize,
    pub outbox: OutboxConfig,
    /// How often unprocessed messages older than `recovery_min_age` are delivered again.
    pub recovery_interval: Duration,
    pub recovery_min_age: Duration,
    /// Send pacing per business number and per recipient.
    pub pacing: Pacing,
    /// Splits replies for the channel's length limit.
    pub split: Splitter,
    /// How often due CRM events are looked for (the background agents' work).
    pub events_poll: Duration,
    /// How long a claimed event is its process's before it is due again.
    pub events_lease: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(300),
            idle_timeout: Duration::from_secs(120),
            max_failures: 3,
            retry_delay: Duration::from_secs(2),
            workers_per_agent: 16,
            max_concurrent_turns: 64,
            outbox: OutboxConfig::default(),
            pacing: Pacing::default(),
            recovery_interval: Duration::from_secs(30),
            recovery_min_age: Duration::from_secs(60),
            split: |text| vec![text.to_owned()],
            events_poll: Duration::from_secs(1),
            events_lease: Duration::from_secs(120),
        }
    }
}

/// What the runtime is built from.
pub struct RuntimeParts {
    pub pool: sqlx::PgPool,
    pub config: RuntimeConfig,
    /// One engine per agent kind, by kind id (`sales`, …).
    pub engines: Vec<(crate::AgentKind, Arc<dyn TurnEngine>)>,
    pub senders: Senders,
    /// Picks each turn's agent; without one, the conversation's active agent answers.
    pub router: Option<Arc<dyn crate::turn::Router>>,
    /// Applies agents' CRM actions; a turn with a tool action fails without one.
    pub actions: Option<Arc<dyn crate::actions::ActionHandler>>,
}

impl std::fmt::Debug for RuntimeParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeParts")
            .field("config", &self.config)
            .field(
                "engines",
                &self.engines.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("senders", &self.senders)
            .finish_non_exhaustive()
    }
}

/// The id of the child a supervision event says has stopped (failed, or terminated), if any: what
/// every supervisor's restart policy starts from.
fn stopped_child(event: &SupervisionEvent) -> Option<ActorId> {
    match event {
        SupervisionEvent::ActorFailed(cell, _) | SupervisionEvent::ActorTerminated(cell, ..) => {
            Some(cell.get_id())
        }
        _ => None,
    }
}
