//! ChannelSupervisor and one channel actor per configured channel (the WhatsAppChannel for
//! `whatsapp`): the outbox sends through them, and they pace what goes out — per business number
//! (WhatsApp allows 80 messages/s by default; over it, 130429) and per recipient (a pair limit of
//! roughly one message every few seconds; over it, 131056).
//!
//! Pacing reserves a send slot in the handler (no I/O there) and the send itself runs in a task
//! that waits for its slot, so one slow provider call never holds up the mailbox.
//!
//! Restart policy: a channel actor that fails is started again with fresh pacing state (the worst
//! case is one burst at the provider's limit, which it answers with a retryable error).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use serde_json::Value;
use tokio::time::Instant;

use crate::inbox::Channel;
use crate::outbox::{ChannelAccount, ChannelSender, SendFailure, SendFuture, Senders};

/// Which actor sends for each channel; kept current by the ChannelSupervisor.
pub type Routes = Arc<RwLock<HashMap<&'static str, ActorRef<SendRequest>>>>;

/// How fast a channel may send.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pacing {
    /// Messages per second per business number (sender address).
    pub per_account_per_second: f64,
    /// Minimum spacing between two messages to the same recipient from the same number.
    pub per_recipient_interval: Duration,
}

impl Default for Pacing {
    fn default() -> Self {
        Self {
            per_account_per_second: 80.0,
            per_recipient_interval: Duration::from_millis(500),
        }
    }
}

/// Send slots: when the next message may go, per account and per (account, recipient).
#[derive(Debug, Default)]
pub struct Schedule {
    next_for_account: HashMap<String, Instant>,
    next_for_pair: HashMap<(String, String), Instant>,
}

impl Schedule {
    /// Reserves the earliest slot at or after `now` allowed by both limits, and returns it.
    pub fn reserve(
        &mut self,
        pacing: &Pacing,
        now: Instant,
        account: &str,
        recipient: &str,
    ) -> Instant {
        let account_gap = Duration::from_secs_f64(1.0 / pacing.per_account_per_second.max(0.001));
        let pair = (account.to_owned(), recipient.to_owned());
        let at = now
            .max(self.next_for_account.get(account).copied().unwrap_or(now))
            .max(self.next_for_pair.get(&pair).copied().unwrap_or(now));
        self.next_for_account
            .insert(account.to_owned(), at + account_gap);
        self.next_for_pair
            .insert(pair, at + pacing.per_recipient_interval);
        // Forget pairs whose slot has long passed, so the map does not grow without bound.
        if self.next_for_pair.len() > 10_000 {
            self.next_for_pair.retain(|_, next| *next > now);
        }
        at
    }
}

pub struct ChannelActor;

pub struct ChannelState {
    sender: Arc<dyn ChannelSender>,
    pacing: Pacing,
    schedule: Schedule,
}

pub struct SendRequest {
    account: ChannelAccount,
    payload: Value,
    key: String,
    reply: RpcReplyPort<Result<String, SendFailure>>,
}

impl Actor for ChannelActor {
    type Msg = SendRequest;
    type State = ChannelState;
    type Arguments = (Arc<dyn ChannelSender>, Pacing);

    async fn pre_start(
        &self,
        _myself: ActorRef<SendRequest>,
        (sender, pacing): Self::Arguments,
    ) -> Result<ChannelState, ActorProcessingErr> {
        Ok(ChannelState {
            sender,
            pacing,
            schedule: Schedule::default(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<SendRequest>,
        msg: SendRequest,
        state: &mut ChannelState,
    ) -> Result<(), ActorProcessingErr> {
        let recipient = msg
            .payload
            .get("to")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let at = state.schedule.reserve(
            &state.pacing,
            Instant::now(),
            &msg.account.address,
            &recipient,
        );
        let send = state.sender.send(msg.account, msg.payload, msg.key);
        let reply = msg.reply;
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            // The outbox gives up on a send after its timeout and will retry the row: sending now
            // would send it twice.
            if reply.is_closed() {
                return;
            }
            let _ = reply.send(send.await);
        });
        Ok(())
    }
}

/// Starts one channel actor per sender and restarts one that fails.
pub struct ChannelSupervisor;

pub struct ChannelSupervisorState {
    senders: HashMap<&'static str, Arc<dyn ChannelSender>>,
    pacing: Pacing,
    routes: Routes,
    channels: HashMap<ActorId, &'static str>,
}

impl Actor for ChannelSupervisor {
    type Msg = ();
    type State = ChannelSupervisorState;
    type Arguments = (Vec<Arc<dyn ChannelSender>>, Pacing, Routes);

    async fn pre_start(
        &self,
        myself: ActorRef<()>,
        (senders, pacing, routes): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = ChannelSupervisorState {
            senders: senders
                .into_iter()
                .map(|s| (s.channel().as_str(), s))
                .collect(),
            pacing,
            routes,
            channels: HashMap::new(),
        };
        let names: Vec<&'static str> = state.senders.keys().copied().collect();
        for name in names {
            start_channel(&myself, &mut state, name).await?;
        }
        Ok(state)
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<()>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(id) = super::stopped_child(&event)
            && let Some(name) = state.channels.remove(&id)
        {
            tracing::error!(channel = name, "channel actor stopped; starting it again");
            start_channel(&myself, state, name).await?;
        }
        Ok(())
    }
}

async fn start_channel(
    myself: &ActorRef<()>,
    state: &mut ChannelSupervisorState,
    name: &'static str,
) -> Result<(), ActorProcessingErr> {
    let (actor, _) = ChannelActor::spawn_linked(
        None,
        ChannelActor,
        (state.senders[name].clone(), state.pacing),
        myself.get_cell(),
    )
    .await?;
    state.channels.insert(actor.get_id(), name);
    state
        .routes
        .write()
        .expect("channel routes lock")
        .insert(name, actor);
    Ok(())
}

/// A [`ChannelSender`] that goes through the channel's actor (and so its pacing).
pub struct RoutedSender {
    channel: Channel,
    routes: Routes,
    /// Longer than pacing delays plus the provider call's own timeout.
    timeout: Duration,
}

impl ChannelSender for RoutedSender {
    fn channel(&self) -> Channel {
        self.channel
    }

    fn send(&self, account: ChannelAccount, payload: Value, key: String) -> SendFuture {
        let actor = self
            .routes
            .read()
            .expect("channel routes lock")
            .get(self.channel.as_str())
            .cloned();
        let timeout = self.timeout;
        Box::pin(async move {
            let actor = actor.ok_or_else(|| SendFailure::Retryable {
                message: "the channel actor is restarting".into(),
                retry_after: None,
            })?;
            match actor
                .call(
                    |reply| SendRequest {
                        account,
                        payload,
                        key,
                        reply,
                    },
                    Some(timeout),
                )
                .await
            {
                Ok(ractor::rpc::CallResult::Success(result)) => result,
                Ok(_) | Err(_) => Err(SendFailure::Retryable {
                    message: "the channel actor did not answer".into(),
                    retry_after: None,
                }),
            }
        })
    }
}

/// Senders for the outbox that route through the channel actors, and the routing table the
/// ChannelSupervisor keeps current.
pub fn routed(senders: &Senders) -> (Senders, Routes) {
    let routes = Arc::new(RwLock::new(HashMap::new()));
    let mut routed = Senders::default();
    for sender in senders.all() {
        routed = routed.with(Arc::new(RoutedSender {
            channel: sender.channel(),
            routes: routes.clone(),
            timeout: Duration::from_secs(120),
        }));
    }
    (routed, routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_respect_the_account_rate_and_the_recipient_spacing() {
        let pacing = Pacing {
            per_account_per_second: 10.0,
            per_recipient_interval: Duration::from_secs(1),
        };
        let mut s = Schedule::default();
        let t0 = Instant::now();
        // Ten recipients at once: spaced by the account rate (100 ms).
        let slots: Vec<Duration> = (0..10)
            .map(|i| s.reserve(&pacing, t0, "num", &format!("r{i}")) - t0)
            .collect();
        assert_eq!(
            slots,
            (0..10)
                .map(|i| Duration::from_millis(100 * i))
                .collect::<Vec<_>>()
        );
        // A second message to r0 waits for its pair spacing (1 s after its first slot), which is
        // later than the account's next slot (1 s).
        assert_eq!(
            s.reserve(&pacing, t0, "num", "r0") - t0,
            Duration::from_secs(1)
        );
        assert_eq!(
            s.reserve(&pacing, t0, "num", "r0") - t0,
            Duration::from_secs(2)
        );
        // Another number is paced on its own.
        assert_eq!(s.reserve(&pacing, t0, "other", "r0") - t0, Duration::ZERO);
        // Time passing frees slots.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(s.reserve(&pacing, later, "num", "r5"), later);
    }
}
