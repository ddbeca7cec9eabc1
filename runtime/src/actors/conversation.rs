//! ConversationActor: one per live (tenant, contact). It serialises its conversation — one turn at
//! a time, in message order — coalesces bursts, supersedes a generation that new messages made
//! stale, and asks to be passivated when idle. It keeps no state that PostgreSQL does not have:
//! a restarted or reactivated actor simply runs a turn over whatever is unprocessed.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::task::AbortHandle;

use super::agents::AgentFailure;
use super::conversations::{ConversationKey, SupervisorMsg};
use super::shared::Shared;
use crate::turn::{self, Skip, TurnError};

pub struct ConversationActor;

pub struct ConversationArgs {
    pub key: ConversationKey,
    pub shared: Arc<Shared>,
    pub supervisor: ActorRef<SupervisorMsg>,
}

pub struct ConversationState {
    key: ConversationKey,
    shared: Arc<Shared>,
    supervisor: ActorRef<SupervisorMsg>,
    /// The highest message sequence delivered to this actor: what the supervisor compares before
    /// it agrees to passivate us.
    seen_seq: i64,
    /// Bumped whenever pending work changes; stale timers and turns carry an older value.
    generation: u64,
    /// A debounce timer is pending for `generation`.
    debouncing: bool,
    turn: Option<RunningTurn>,
    /// Messages arrived while a turn was committing: run another turn after it.
    rerun: bool,
    /// Failed turns in a row (temporary failures; crashes are counted by the supervisor).
    failures: u32,
    /// The pending idle check, cancelled when another is scheduled or the actor stops, so no timer
    /// outlives a passivated actor.
    idle_timer: Option<tokio::task::JoinHandle<Result<(), ractor::MessagingErr<ConversationMsg>>>>,
}

struct RunningTurn {
    generation: u64,
    /// `seen_seq` when the turn loaded its messages; a later delivery makes the turn stale.
    seen_at_start: i64,
    /// Past the point of no return: the turn is committing and may not be cancelled.
    committing: bool,
    abort: AbortHandle,
}

pub enum ConversationMsg {
    /// A committed inbound message with this sequence number is waiting.
    NewMessage {
        seq: i64,
    },
    DebounceElapsed {
        generation: u64,
    },
    /// The turn asks whether it may commit; `false` means it was superseded.
    MayCommit {
        generation: u64,
        reply: RpcReplyPort<bool>,
    },
    TurnFinished {
        generation: u64,
        result: TurnResult,
    },
    IdleCheck {
        generation: u64,
    },
}

pub enum TurnResult {
    /// Committed; `again` when a handoff asks the next agent to answer now.
    Applied {
        again: bool,
    },
    Skipped,
    Superseded,
    Failed(TurnError),
    /// The turn's task or its agent worker panicked.
    Crashed(String),
}

impl Actor for ConversationActor {
    type Msg = ConversationMsg;
    type State = ConversationState;
    type Arguments = ConversationArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<ConversationMsg>,
        args: ConversationArgs,
    ) -> Result<ConversationState, ActorProcessingErr> {
        // Nothing to load here: each turn loads what it needs, so (re)activation is cheap.
        Ok(ConversationState {
            key: args.key,
            shared: args.shared,
            supervisor: args.supervisor,
            seen_seq: 0,
            generation: 0,
            debouncing: false,
            turn: None,
            rerun: false,
            failures: 0,
            idle_timer: None,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ConversationMsg>,
        state: &mut ConversationState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = state.idle_timer.take() {
            timer.abort();
        }
        if let Some(turn) = state.turn.take()
            && !turn.committing
        {
            turn.abort.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ConversationMsg>,
        msg: ConversationMsg,
        state: &mut ConversationState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ConversationMsg::NewMessage { seq } => on_new_message(&myself, state, seq),
            ConversationMsg::DebounceElapsed { generation } => {
                on_debounce_elapsed(&myself, state, generation);
            }
            ConversationMsg::MayCommit { generation, reply } => {
                on_may_commit(state, generation, reply);
            }
            ConversationMsg::TurnFinished { generation, result } => {
                return on_turn_finished(&myself, state, generation, result);
            }
            ConversationMsg::IdleCheck { generation } => on_idle_check(&myself, state, generation),
        }
        Ok(())
    }
}

fn on_new_message(myself: &ActorRef<ConversationMsg>, state: &mut ConversationState, seq: i64) {
    // A redelivery (recovery, a restart) of something already seen must not cancel a turn that
    // covers it.
    let is_new = seq > state.seen_seq;
    state.seen_seq = state.seen_seq.max(seq);
    match &state.turn {
        Some(turn) if turn.committing => state.rerun |= is_new,
        Some(_) if !is_new => {}
        Some(turn) => {
            // Double texting while generating: the generation is stale. Cancel it and answer
            // everything together after the debounce.
            tracing::debug!(conversation = %state.key.conversation, "new message supersedes the running generation");
            turn.abort.abort();
            state.turn = None;
            start_debounce(myself, state);
        }
        None if state.debouncing && !is_new => {}
        None => start_debounce(myself, state),
    }
}

fn start_debounce(myself: &ActorRef<ConversationMsg>, state: &mut ConversationState) {
    state.generation += 1;
    state.debouncing = true;
    let generation = state.generation;
    myself.send_after(state.shared.config.debounce, move || {
        ConversationMsg::DebounceElapsed { generation }
    });
}

fn on_debounce_elapsed(
    myself: &ActorRef<ConversationMsg>,
    state: &mut ConversationState,
    generation: u64,
) {
    if generation != state.generation || state.turn.is_some() {
        return;
    }
    state.debouncing = false;
    start_turn(myself, state);
}

fn start_turn(myself: &ActorRef<ConversationMsg>, state: &mut ConversationState) {
    let generation = state.generation;
    let shared = state.shared.clone();
    let key = state.key;
    let actor = myself.clone();
    // The last attempt the retries allow: if the model fails again, the contact gets an apology
    // and a human instead of another retry.
    let last_attempt = state.failures + 1 >= state.shared.config.max_failures;
    let body = tokio::spawn(run_turn(shared, key, actor, generation, last_attempt));
    let abort = body.abort_handle();
    // A watcher turns a panic in the turn into a message; a cancelled turn says nothing.
    let actor = myself.clone();
    tokio::spawn(async move {
        let result = match body.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => TurnResult::Crashed(format!("the turn panicked: {e}")),
            Err(_) => return,
        };
        let _ = actor.cast(ConversationMsg::TurnFinished { generation, result });
    });
    state.turn = Some(RunningTurn {
        generation,
        seen_at_start: state.seen_seq,
        committing: false,
        abort,
    });
}

/// The turn itself, off the actor's mailbox: load, generate, ask to commit, commit.
async fn run_turn(
    shared: Arc<Shared>,
    key: ConversationKey,
    actor: ActorRef<ConversationMsg>,
    generation: u64,
    last_attempt: bool,
) -> TurnResult {
    // Wait for a slot; a superseded turn is cancelled while waiting, at no cost.
    let Ok(_permit) = shared.turn_permits.acquire().await else {
        return TurnResult::Failed(TurnError::Temporary("the runtime is shutting down".into()));
    };
    let mut input = match turn::load_input(&shared.pool, key.tenant, key.conversation).await {
        Ok(Ok(input)) => input,
        Ok(Err(Skip::NothingNew | Skip::HumanOwns)) => return TurnResult::Skipped,
        Err(e) => return TurnResult::Failed(TurnError::Temporary(e.to_string())),
    };
    if let Some(router) = &shared.router
        && input.has_new_messages()
    {
        turn::route(router.as_ref(), &mut input);
    }
    let outcome = match shared.agents.run(input.clone()).await {
        Ok(outcome) => outcome,
        Err(AgentFailure::Turn(TurnError::Temporary(reason))) if last_attempt => {
            tracing::error!(conversation = %key.conversation, reason, "the model stayed unavailable: apologising and escalating");
            turn::unavailable_outcome(&input, &reason)
        }
        Err(AgentFailure::Turn(e)) => return TurnResult::Failed(e),
        Err(AgentFailure::Crashed(e)) => return TurnResult::Crashed(e),
    };
    match ractor::call_t!(
        actor,
        |reply| ConversationMsg::MayCommit { generation, reply },
        5_000
    ) {
        Ok(true) => {}
        Ok(false) => return TurnResult::Superseded,
        Err(e) => {
            return TurnResult::Failed(TurnError::Temporary(format!(
                "the conversation did not answer: {e}"
            )));
        }
    }
    let lease = Some(shared.config.outbox.lease);
    let handler = shared.actions.as_deref();
    match turn::apply(
        &shared.pool,
        &input,
        &outcome,
        shared.config.split,
        lease,
        handler,
    )
    .await
    {
        Ok(applied) => {
            if !applied.claimed.is_empty() {
                shared.send_claimed(applied.claimed);
            }
            if applied.queued {
                shared.wake_outbox();
            }
            TurnResult::Applied {
                again: turn::answers_at_once(&input, &outcome),
            }
        }
        // Another turn answered these messages first (a rerun after recovery): nothing to do.
        Err(crate::Error::Conflict(_)) => TurnResult::Skipped,
        Err(e) => TurnResult::Failed(TurnError::Temporary(e.to_string())),
    }
}

fn on_may_commit(state: &mut ConversationState, generation: u64, reply: RpcReplyPort<bool>) {
    let allowed = match &mut state.turn {
        Some(turn) if turn.generation == generation && state.seen_seq == turn.seen_at_start => {
            turn.committing = true;
            true
        }
        _ => false,
    };
    let _ = reply.send(allowed);
}

fn on_turn_finished(
    myself: &ActorRef<ConversationMsg>,
    state: &mut ConversationState,
    generation: u64,
    result: TurnResult,
) -> Result<(), ActorProcessingErr> {
    if state
        .turn
        .as_ref()
        .is_none_or(|t| t.generation != generation)
    {
        return Ok(());
    }
    state.turn = None;
    match result {
        TurnResult::Applied { again } => {
            state.failures = 0;
            state.rerun |= again;
            let _ = state
                .supervisor
                .cast(SupervisorMsg::TurnSucceeded(state.key));
        }
        TurnResult::Skipped => {
            state.failures = 0;
            let _ = state
                .supervisor
                .cast(SupervisorMsg::TurnSucceeded(state.key));
        }
        TurnResult::Superseded => {}
        TurnResult::Crashed(reason) => {
            // Fail the actor: the supervisor counts crashes, restarts us, and dead-letters after
            // the limit.
            return Err(reason.into());
        }
        TurnResult::Failed(TurnError::Temporary(reason)) => {
            state.failures += 1;
            tracing::warn!(conversation = %state.key.conversation, failures = state.failures, reason, "turn failed");
            if state.failures < state.shared.config.max_failures {
                state.generation += 1;
                state.debouncing = true;
                let generation = state.generation;
                let delay = state.shared.config.retry_delay * state.failures;
                myself.send_after(delay, move || ConversationMsg::DebounceElapsed {
                    generation,
                });
                return Ok(());
            }
            dead_letter(
                state,
                format!("the turn failed {} times: {reason}", state.failures),
            );
            state.failures = 0;
        }
        TurnResult::Failed(TurnError::Permanent(reason)) => dead_letter(state, reason),
        TurnResult::Failed(TurnError::NotReady(reason)) => {
            // Not this conversation's fault: no failure counted, no retry loop. The messages wait
            // in PostgreSQL; the actor passivates and the next start redelivers them.
            tracing::warn!(conversation = %state.key.conversation, reason, "turn waits: not ready");
        }
    }
    if state.rerun {
        state.rerun = false;
        start_debounce(myself, state);
    } else if !state.debouncing {
        schedule_idle_check(myself, state);
    }
    Ok(())
}

fn dead_letter(state: &ConversationState, reason: String) {
    let (pool, key) = (state.shared.pool.clone(), state.key);
    let attempts = i32::try_from(state.failures.max(1)).unwrap_or(i32::MAX);
    tokio::spawn(async move {
        match turn::dead_letter(&pool, key.tenant, key.conversation, &reason, attempts).await {
            Ok(n) => {
                tracing::error!(conversation = %key.conversation, messages = n, reason, "messages dead-lettered; a human is needed");
            }
            Err(e) => {
                tracing::error!(conversation = %key.conversation, error = %e, "could not dead-letter");
            }
        }
    });
}

fn schedule_idle_check(myself: &ActorRef<ConversationMsg>, state: &mut ConversationState) {
    let generation = state.generation;
    let idle: Duration = state.shared.config.idle_timeout;
    if let Some(previous) = state.idle_timer.take() {
        previous.abort();
    }
    state.idle_timer =
        Some(myself.send_after(idle, move || ConversationMsg::IdleCheck { generation }));
}

fn on_idle_check(myself: &ActorRef<ConversationMsg>, state: &ConversationState, generation: u64) {
    if generation == state.generation && state.turn.is_none() && !state.debouncing {
        let _ = state.supervisor.cast(SupervisorMsg::Idle {
            key: state.key,
            seen_seq: state.seen_seq,
            actor: myself.get_id(),
        });
    }
}
