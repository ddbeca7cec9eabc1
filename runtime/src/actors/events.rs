//! EventDispatcher: runs the background agents on the CRM events that are due
//! ([`crate::events`]), once a minute writes the scheduled ones (the forecaster's daily event
//! per tenant), and hands conversations whose follow-up is due to the follow-up agent. A timer wakes it; one sweep at a time takes up the due events, each in a
//! task of its own that waits for a turn permit like a conversation's turn, runs the agent through
//! its pool, and commits the outcome. A failure leaves the event due again later (and given up,
//! with the admins told, after `events::MAX_ATTEMPTS`).
//!
//! Restart policy: the root restarts a failed dispatcher; an event whose task was lost is due
//! again when its lease ends.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::agents::AgentFailure;
use super::conversations::ConversationKey;
use super::shared::Shared;
use crate::events;
use crate::ids::TenantId;

pub struct EventDispatcher;

pub struct EventsState {
    shared: Arc<Shared>,
    sweeping: bool,
    /// When the forecaster's daily events were last written.
    scheduled: Option<std::time::Instant>,
}

/// How often the scheduled events (the forecaster's, once a day per tenant) are written.
const SCHEDULE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

pub enum EventsMsg {
    Wake,
    SweepDone,
}

/// Events taken up per sweep round.
const BATCH: usize = 32;

impl Actor for EventDispatcher {
    type Msg = EventsMsg;
    type State = EventsState;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        myself: ActorRef<EventsMsg>,
        shared: Arc<Shared>,
    ) -> Result<EventsState, ActorProcessingErr> {
        myself.send_interval(shared.config.events_poll, || EventsMsg::Wake);
        let _ = myself.cast(EventsMsg::Wake);
        Ok(EventsState {
            shared,
            sweeping: false,
            scheduled: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<EventsMsg>,
        msg: EventsMsg,
        state: &mut EventsState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            EventsMsg::Wake if state.sweeping => {}
            EventsMsg::Wake => {
                state.sweeping = true;
                let schedule = state
                    .scheduled
                    .is_none_or(|at| at.elapsed() >= SCHEDULE_EVERY);
                if schedule {
                    state.scheduled = Some(std::time::Instant::now());
                }
                let (shared, actor) = (state.shared.clone(), myself);
                tokio::spawn(async move {
                    if schedule {
                        match events::schedule_forecasts(&shared.pool).await {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(tenants = n, "forecasts scheduled"),
                            Err(e) => tracing::warn!(error = %e, "could not schedule forecasts"),
                        }
                    }
                    if let Err(e) = fire_follow_ups(&shared).await {
                        tracing::warn!(error = %e, "could not fire the follow-ups due");
                    }
                    if let Err(e) = sweep(&shared).await {
                        tracing::warn!(error = %e, "the event sweep failed; retrying on the next tick");
                    }
                    let _ = actor.cast(EventsMsg::SweepDone);
                });
            }
            EventsMsg::SweepDone => state.sweeping = false,
        }
        Ok(())
    }
}

/// Hands every conversation whose follow-up is due to the follow-up agent, and asks it to answer.
async fn fire_follow_ups(shared: &Shared) -> crate::Result<()> {
    loop {
        let due = events::fire_follow_ups(&shared.pool, BATCH).await?;
        for &(tenant, contact, conversation) in &due {
            let key = ConversationKey {
                tenant,
                contact,
                conversation,
            };
            if !shared.deliver(key, 0) {
                tracing::warn!(%conversation, "follow-up due: the conversation runs at recovery");
            }
        }
        if due.len() < BATCH {
            return Ok(());
        }
    }
}

/// Claims every due event and runs each; returns when they are all done.
async fn sweep(shared: &Arc<Shared>) -> crate::Result<()> {
    loop {
        let due = events::due(&shared.pool, BATCH).await?;
        if due.is_empty() {
            return Ok(());
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (tenant, event) in due {
            if !events::claim(&shared.pool, tenant, event, shared.config.events_lease).await? {
                continue;
            }
            let shared = shared.clone();
            tasks.spawn(async move { run(&shared, tenant, event).await });
        }
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done {
                tracing::error!(error = %e, "an event task failed");
            }
        }
    }
}

/// One event: its turn, run by the agent's pool and committed; a failure recorded on the event.
async fn run(shared: &Shared, tenant: TenantId, event: crate::EventId) {
    let Ok(_permit) = shared.turn_permits.acquire().await else {
        return;
    };
    let result = async {
        let Some(input) = events::load_input(&shared.pool, tenant, event).await? else {
            return Ok(());
        };
        let outcome = shared
            .agents
            .run(input.clone())
            .await
            .map_err(|e| match e {
                AgentFailure::Turn(e) => crate::Error::Unavailable(e.to_string()),
                AgentFailure::Crashed(e) => crate::Error::Unavailable(e),
            })?;
        match events::apply(&shared.pool, &input, &outcome, shared.actions.as_deref()).await {
            Err(crate::Error::Conflict(_)) => Ok(()),
            other => other,
        }
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(%event, error = %e, "a background agent's event failed");
        match events::failed(&shared.pool, tenant, event, &e.to_string()).await {
            Ok(true) => tracing::error!(%event, "event given up; the tenant's admins were told"),
            Ok(false) => {}
            Err(e) => tracing::warn!(%event, error = %e, "could not record the event's failure"),
        }
    }
}
