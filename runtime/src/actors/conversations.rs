//! ConversationSupervisor: owns the map from (tenant, contact) to the live ConversationActor,
//! spawns actors on demand, passivates idle ones, and applies the restart policy.
//!
//! Restart policy: a conversation actor that fails is started again at once and reruns its turn
//! from PostgreSQL. Failures are counted per conversation and reset by a successful turn; at
//! `max_failures` in a row the conversation's unprocessed messages go to `dead_letters` and the
//! conversation is flagged for a human, then a fresh actor carries on with later messages.

use std::collections::HashMap;
use std::sync::Arc;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use super::conversation::{ConversationActor, ConversationArgs, ConversationMsg};
use super::shared::Shared;
use crate::ids::{ContactId, ConversationId, TenantId};
use crate::turn;

/// What a conversation actor is keyed by. The conversation id rides along: one per contact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConversationKey {
    pub tenant: TenantId,
    pub contact: ContactId,
    pub conversation: ConversationId,
}

pub struct ConversationSupervisor;

struct Live {
    actor: ActorRef<ConversationMsg>,
    /// The highest sequence delivered to this actor.
    delivered_seq: i64,
}

pub struct SupervisorState {
    shared: Arc<Shared>,
    live: HashMap<(TenantId, ContactId), Live>,
    keys: HashMap<ActorId, ConversationKey>,
    /// Failures in a row per conversation.
    failures: HashMap<(TenantId, ContactId), u32>,
}

pub enum SupervisorMsg {
    /// A committed inbound message (or, on recovery, the newest of several) is waiting.
    Deliver {
        key: ConversationKey,
        seq: i64,
    },
    /// An actor has been idle; it is stopped if nothing was delivered since `seen_seq`.
    Idle {
        key: ConversationKey,
        seen_seq: i64,
        actor: ActorId,
    },
    TurnSucceeded(ConversationKey),
    /// How many conversation actors are live.
    LiveCount(RpcReplyPort<usize>),
}

impl Actor for ConversationSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        shared: Arc<Shared>,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(SupervisorState {
            shared,
            live: HashMap::new(),
            keys: HashMap::new(),
            failures: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Deliver { key, seq } => on_deliver(&myself, state, key, seq).await?,
            SupervisorMsg::Idle {
                key,
                seen_seq,
                actor,
            } => on_idle(state, key, seen_seq, actor),
            SupervisorMsg::TurnSucceeded(key) => {
                state.failures.remove(&(key.tenant, key.contact));
            }
            SupervisorMsg::LiveCount(reply) => {
                let _ = reply.send(state.live.len());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorTerminated(cell, ..) => {
                // A passivated actor (or one stopped at shutdown): forget it.
                if let Some(key) = state.keys.remove(&cell.get_id()) {
                    let slot = (key.tenant, key.contact);
                    if state
                        .live
                        .get(&slot)
                        .is_some_and(|l| l.actor.get_id() == cell.get_id())
                    {
                        state.live.remove(&slot);
                    }
                }
            }
            SupervisionEvent::ActorFailed(cell, error) => {
                let Some(key) = state.keys.remove(&cell.get_id()) else {
                    return Ok(());
                };
                let slot = (key.tenant, key.contact);
                // Only the failed actor's own entry: a replacement may already hold the slot.
                let delivered = if state
                    .live
                    .get(&slot)
                    .is_some_and(|l| l.actor.get_id() == cell.get_id())
                {
                    state.live.remove(&slot).map_or(0, |l| l.delivered_seq)
                } else {
                    0
                };
                let failures = state.failures.entry(slot).or_insert(0);
                *failures += 1;
                tracing::error!(conversation = %key.conversation, failures = *failures, %error, "conversation actor failed");
                if *failures >= state.shared.config.max_failures {
                    let attempts = i32::try_from(*failures).unwrap_or(i32::MAX);
                    state.failures.remove(&slot);
                    let reason =
                        format!("the conversation crashed {attempts} times in a row: {error}");
                    // Off the handler: a supervisor does no I/O.
                    let pool = state.shared.pool.clone();
                    tokio::spawn(async move {
                        match turn::dead_letter(
                            &pool,
                            key.tenant,
                            key.conversation,
                            &reason,
                            attempts,
                        )
                        .await
                        {
                            Ok(_) => {
                                tracing::error!(conversation = %key.conversation, "messages dead-lettered; a human is needed");
                            }
                            Err(e) => {
                                tracing::error!(conversation = %key.conversation, error = %e, "could not dead-letter");
                            }
                        }
                    });
                } else if !state.live.contains_key(&slot) {
                    // Start again: the new actor reruns the turn over what is still unprocessed.
                    on_deliver(&myself, state, key, delivered.max(1)).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

async fn on_deliver(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    key: ConversationKey,
    seq: i64,
) -> Result<(), ActorProcessingErr> {
    let slot = (key.tenant, key.contact);
    if let Some(live) = state.live.get_mut(&slot) {
        live.delivered_seq = live.delivered_seq.max(seq);
        if live.actor.cast(ConversationMsg::NewMessage { seq }).is_ok() {
            return Ok(());
        }
        // The actor is stopping: replace it.
        state.live.remove(&slot);
    }
    let (actor, _) = ConversationActor::spawn_linked(
        None,
        ConversationActor,
        ConversationArgs {
            key,
            shared: state.shared.clone(),
            supervisor: myself.clone(),
        },
        myself.get_cell(),
    )
    .await?;
    state.keys.insert(actor.get_id(), key);
    let _ = actor.cast(ConversationMsg::NewMessage { seq });
    state.live.insert(
        slot,
        Live {
            actor,
            delivered_seq: seq,
        },
    );
    Ok(())
}

fn on_idle(state: &mut SupervisorState, key: ConversationKey, seen_seq: i64, actor: ActorId) {
    let slot = (key.tenant, key.contact);
    let passivate = state
        .live
        .get(&slot)
        .is_some_and(|l| l.actor.get_id() == actor && l.delivered_seq <= seen_seq);
    if passivate && let Some(live) = state.live.remove(&slot) {
        // Nothing was delivered since the actor last looked: stopping it loses nothing, and the
        // next delivery spawns a fresh one.
        live.actor.stop(Some("passivated".into()));
    }
}
