//! OutboxDispatcher: sends committed outbox rows. Woken after every turn that queued a message and
//! on a timer (for retries and for rows left by a crashed process). Sweeps run in a task, one at a
//! time; a wake during a sweep schedules another.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::root::Shared;
use crate::outbox::{Senders, sweep};

pub struct OutboxDispatcher;

pub struct DispatcherState {
    shared: Arc<Shared>,
    senders: Senders,
    sweeping: bool,
    again: bool,
}

pub enum DispatcherMsg {
    Wake,
    SweepDone,
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
            shared,
            senders,
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
    let (shared, senders, actor) = (state.shared.clone(), state.senders.clone(), myself.clone());
    tokio::spawn(async move {
        if let Err(e) = sweep(&shared.pool, &senders, &shared.config.outbox).await {
            tracing::warn!(error = %e, "outbox sweep failed; retrying on the next tick");
        }
        let _ = actor.cast(DispatcherMsg::SweepDone);
    });
}
