//! RootSupervisor and the [`Runtime`] handle.
//!
//! Restart policy: every child of the root (the conversation supervisor, the agent supervisor, the
//! channel supervisor, the outbox dispatcher, the event dispatcher) that stops or fails is started
//! again. A new conversation supervisor starts
//! empty, so the root then redelivers every conversation with unprocessed messages from
//! PostgreSQL — the same recovery that runs at start-up.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};

use super::RuntimeParts;
use super::agents::{AgentSupervisor, AgentSupervisorArgs, AgentsHandle};
use super::channels::{ChannelSupervisor, Routes};
use super::conversations::{ConversationKey, ConversationSupervisor, SupervisorMsg};
use super::events::EventDispatcher;
use super::outbox::{DispatcherMsg, OutboxDispatcher};
use super::shared::Shared;
use crate::error::{Error, Result};
use crate::inbox::Accepted;
use crate::outbox::Senders;
use crate::turn::TurnEngine;

/// Redelivers every conversation that has committed but unprocessed inbound messages.
async fn recover(shared: &Shared, min_age: Duration) -> Result<usize> {
    let pending: Vec<(
        crate::TenantId,
        crate::ContactId,
        crate::ConversationId,
        i64,
    )> = sqlx::query_as(
        "SELECT tenant_id, contact_id, conversation_id, max_seq FROM wasit_pending_conversations(make_interval(secs => $1))",
    )
    .bind(min_age.as_secs_f64())
    .fetch_all(&shared.pool)
    .await?;
    let supervisor = shared
        .conversations()
        .ok_or_else(|| Error::Unavailable("the runtime is not running".into()))?;
    for &(tenant, contact, conversation, seq) in &pending {
        let _ = supervisor.cast(SupervisorMsg::Deliver {
            key: ConversationKey {
                tenant,
                contact,
                conversation,
            },
            seq,
        });
    }
    Ok(pending.len())
}

#[derive(Clone, Copy, Debug)]
enum Child {
    Conversations,
    Agents,
    Channels,
    Outbox,
    Events,
}

pub struct RootSupervisor;

pub struct RootState {
    shared: Arc<Shared>,
    /// The channels' own senders, run by the channel actors.
    senders: Senders,
    /// What the outbox sends through: the channel actors.
    routed: Senders,
    routes: Routes,
    engines: Vec<(crate::AgentKind, Arc<dyn TurnEngine>)>,
    children: HashMap<ActorId, Child>,
}

impl Actor for RootSupervisor {
    type Msg = ();
    type State = RootState;
    type Arguments = (
        Arc<Shared>,
        Senders,
        Vec<(crate::AgentKind, Arc<dyn TurnEngine>)>,
    );

    async fn pre_start(
        &self,
        myself: ActorRef<()>,
        (shared, senders, engines): Self::Arguments,
    ) -> Result<RootState, ActorProcessingErr> {
        let (routed, routes) = super::channels::routed(&senders);
        let mut state = RootState {
            shared,
            senders,
            routed,
            routes,
            engines,
            children: HashMap::new(),
        };
        for child in [
            Child::Agents,
            Child::Channels,
            Child::Conversations,
            Child::Outbox,
            Child::Events,
        ] {
            start_child(&myself, &mut state, child).await?;
        }
        Ok(state)
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<()>,
        event: SupervisionEvent,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(id) = super::stopped_child(&event)
            && let Some(child) = state.children.remove(&id)
        {
            tracing::error!(?child, "runtime supervisor stopped; starting it again");
            start_child(&myself, state, child).await?;
            if matches!(child, Child::Conversations) {
                let shared = state.shared.clone();
                tokio::spawn(async move {
                    match recover(&shared, Duration::ZERO).await {
                        Ok(n) => tracing::info!(
                            conversations = n,
                            "redelivered after a supervisor restart"
                        ),
                        Err(e) => {
                            tracing::error!(error = %e, "redelivery after a supervisor restart failed");
                        }
                    }
                });
            }
        }
        Ok(())
    }
}

async fn start_child(
    myself: &ActorRef<()>,
    state: &mut RootState,
    child: Child,
) -> Result<(), ActorProcessingErr> {
    let id = match child {
        Child::Conversations => {
            let (actor, _) = ConversationSupervisor::spawn_linked(
                None,
                ConversationSupervisor,
                state.shared.clone(),
                myself.get_cell(),
            )
            .await?;
            *state
                .shared
                .conversations
                .write()
                .expect("conversations ref lock") = Some(actor.clone());
            actor.get_id()
        }
        Child::Agents => {
            let args = AgentSupervisorArgs {
                engines: state.engines.clone(),
                workers: state.shared.config.workers_per_agent,
                handle: state.shared.agents.clone(),
            };
            let (actor, _) =
                AgentSupervisor::spawn_linked(None, AgentSupervisor, args, myself.get_cell())
                    .await?;
            actor.get_id()
        }
        Child::Channels => {
            let senders = state.senders.all().cloned().collect();
            let args = (senders, state.shared.config.pacing, state.routes.clone());
            let (actor, _) =
                ChannelSupervisor::spawn_linked(None, ChannelSupervisor, args, myself.get_cell())
                    .await?;
            actor.get_id()
        }
        Child::Outbox => {
            let (actor, _) = OutboxDispatcher::spawn_linked(
                None,
                OutboxDispatcher,
                (state.shared.clone(), state.routed.clone()),
                myself.get_cell(),
            )
            .await?;
            *state.shared.outbox.write().expect("outbox ref lock") = Some(actor.clone());
            actor.get_id()
        }
        Child::Events => {
            let (actor, _) = EventDispatcher::spawn_linked(
                None,
                EventDispatcher,
                state.shared.clone(),
                myself.get_cell(),
            )
            .await?;
            actor.get_id()
        }
    };
    state.children.insert(id, child);
    Ok(())
}

/// The running conversation runtime.
pub struct Runtime {
    root: ActorRef<()>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Starts the actor tree, then redelivers whatever a previous process left unprocessed (its
    /// unsent outbox rows are due at once, and the dispatcher's first sweep sends them).
    pub async fn start(parts: RuntimeParts) -> Result<Self> {
        let shared = Arc::new(Shared {
            pool: parts.pool,
            turn_permits: tokio::sync::Semaphore::new(parts.config.max_concurrent_turns.max(1)),
            config: parts.config,
            agents: AgentsHandle::default(),
            router: parts.router,
            actions: parts.actions,
            conversations: RwLock::new(None),
            outbox: RwLock::new(None),
            sends: Arc::default(),
        });
        let (root, _) = Actor::spawn(
            None,
            RootSupervisor,
            (shared.clone(), parts.senders, parts.engines),
        )
        .await
        .map_err(|e| Error::Unavailable(format!("the actor runtime did not start: {e}")))?;
        let runtime = Self { root, shared };
        let recovered = recover(&runtime.shared, Duration::ZERO).await?;
        // A safety net for deliveries that were lost (a webhook whose later batch failed, a
        // request dropped mid-commit): messages unprocessed for longer than the margin are
        // delivered again. Redelivery is harmless: an actor ignores what it has already seen.
        let (shared, every) = (
            Arc::downgrade(&runtime.shared),
            runtime.shared.config.recovery_interval,
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                if shared.conversations().is_none() {
                    return;
                }
                if let Err(e) = recover(&shared, shared.config.recovery_min_age).await {
                    tracing::warn!(error = %e, "periodic redelivery failed");
                }
            }
        });
        if recovered > 0 {
            tracing::info!(
                conversations = recovered,
                "redelivered unprocessed messages from before the restart"
            );
        }
        Ok(runtime)
    }

    /// Hands newly committed messages to their conversations.
    pub fn deliver(&self, accepted: &[Accepted]) {
        let Some(supervisor) = self.shared.conversations() else {
            return;
        };
        for a in accepted {
            let key = ConversationKey {
                tenant: a.tenant,
                contact: a.contact,
                conversation: a.conversation,
            };
            if supervisor
                .cast(SupervisorMsg::Deliver { key, seq: a.seq })
                .is_err()
            {
                // The supervisor is restarting; its recovery will find the message in PostgreSQL.
                tracing::warn!(conversation = %a.conversation, "delivery deferred to recovery");
            }
        }
    }

    /// Wakes the outbox dispatcher.
    pub fn wake_outbox(&self) {
        self.shared.wake_outbox();
    }

    /// How many conversation actors are live (not passivated).
    pub async fn live_conversations(&self) -> Result<usize> {
        let supervisor = self
            .shared
            .conversations()
            .ok_or_else(|| Error::Unavailable("the runtime is not running".into()))?;
        ractor::call_t!(supervisor, SupervisorMsg::LiveCount, 5_000).map_err(|e| {
            Error::Unavailable(format!("the conversation supervisor did not answer: {e}"))
        })
    }

    /// Stops the actor tree. Turns that are committing finish or roll back as a whole; anything
    /// not committed is found again by the next start.
    pub async fn shutdown(&self) {
        // Nothing delivers or wakes into a stopping tree (and the periodic redelivery ends).
        *self
            .shared
            .conversations
            .write()
            .expect("conversations ref lock") = None;
        // Turns that committed before this point have handed their replies to the dispatcher:
        // let those sends finish (and be recorded) before the channels stop.
        let dispatcher = self.shared.outbox.write().expect("outbox ref lock").take();
        if let Some(dispatcher) = dispatcher {
            // Everything already in its mailbox is taken up before this answer.
            let _ = ractor::call_t!(dispatcher, DispatcherMsg::Flush, 5_000);
        }
        if !self.shared.sends.drained(Duration::from_secs(10)).await {
            tracing::warn!("sends still in flight at shutdown; they are retried after their lease");
        }
        self.root.stop(Some("shutdown".into()));
        let _ = tokio::time::timeout(Duration::from_secs(10), self.root.wait(None)).await;
    }
}
