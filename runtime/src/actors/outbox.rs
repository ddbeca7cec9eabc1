//! OutboxDispatcher: sends committed outbox rows, two ways.
//! - The fast path: a turn commits its replies already claimed and hands them here
//!   ([`DispatcherMsg::SendClaimed`]); they are sent at once, each reply in a task of its own.
//! - Sweeps: rows that are due (retries, replies queued behind an earlier pending one, rows left
//!   by a crashed process once their lease ends), found in PostgreSQL. Woken by turns that queued
//!   rows and by a timer; one sweep at a time, and a wake during a sweep schedules another.
//!
//! Restart policy: the root restarts a failed dispatcher; sends in flight are tasks and finish on
//! their own, and whatever a lost task held comes back to the sweeps when its lease ends.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::shared::Shared;
use crate::outbox::{Claimed, Dispatch, Senders, send_claimed, sweep};

pub struct OutboxDispatcher;

pub struct DispatcherState {
    shared: Arc<Shared>,
    dispatch: Dispatch,
    sweeping: bool,
    again: bool,
}

pub enum DispatcherMsg {
    Wake,
    SweepDone,
    /// The parts of one reply, committed claimed by its turn: send them now, in order.
    SendClaimed(Vec<Claimed>),
    /// Answers once everything sent to the dispatcher before it has been taken up.
    Flush(ractor::RpcReplyPort<()>),
}

impl Actor for OutboxDispatcher {
    type Msg = DispatcherMsg;
    type State = DispatcherState;
    type Arguments = (Arc<Shared>, Senders);

    async fn pre_start(
        &self,
        myself: ActorRef<DispatcherMsg>,
        (shared, senders): Self::Arguments,
    ) -> Result<DispatcherState, ActorProcessingErr> {
        myself.send_interval(shared.config.outbox.poll_interval, || DispatcherMsg::Wake);
        // Rows left by an earlier process are due now.
        let _ = myself.cast(DispatcherMsg::Wake);
        Ok(DispatcherState {
            dispatch: Dispatch::new(shared.pool.clone(), senders, shared.config.outbox.clone()),
            shared,
            sweeping: false,
            again: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<DispatcherMsg>,
        msg: DispatcherMsg,
        state: &mut DispatcherState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            DispatcherMsg::Wake if state.sweeping => state.again = true,
            DispatcherMsg::Wake => start_sweep(&myself, state),
            DispatcherMsg::SendClaimed(rows) => {
                let dispatch = state.dispatch.clone();
                let guard = state.shared.sends.start();
                tokio::spawn(async move {
                    let _guard = guard;
                    if let Err(e) = send_claimed(&dispatch, rows).await {
                        tracing::warn!(error = %e, "a send could not be recorded; the sweeps retry it after its lease");
                    }
                });
            }
            DispatcherMsg::Flush(reply) => {
                let _ = reply.send(());
            }
            DispatcherMsg::SweepDone => {
                state.sweeping = false;
                if std::mem::take(&mut state.again) {
                    start_sweep(&myself, state);
                }
            }
        }
        Ok(())
    }
}

fn start_sweep(myself: &ActorRef<DispatcherMsg>, state: &mut DispatcherState) {
    state.sweeping = true;
    let (dispatch, actor) = (state.dispatch.clone(), myself.clone());
    tokio::spawn(async move {
        if let Err(e) = sweep(&dispatch).await {
            tracing::warn!(error = %e, "outbox sweep failed; retrying on the next tick");
        }
        let _ = actor.cast(DispatcherMsg::SweepDone);
    });
}
