//! [`Shared`]: what every actor of the runtime holds — the pool, the configuration, the agents,
//! the router and action handler, the turn permits — and the references to the running
//! supervisor and dispatcher that deliveries and fast-path sends go through. Its own module so
//! that the actors import it, not the root supervisor that starts them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ractor::ActorRef;
use sqlx::PgPool;

use super::RuntimeConfig;
use super::agents::AgentsHandle;
use super::conversations::{ConversationKey, SupervisorMsg};
use super::outbox::DispatcherMsg;

/// What every actor of the runtime shares.
pub struct Shared {
    pub pool: PgPool,
    pub config: RuntimeConfig,
    pub agents: AgentsHandle,
    pub router: Option<Arc<dyn crate::turn::Router>>,
    pub actions: Option<Arc<dyn crate::actions::ActionHandler>>,
    /// Admission control for turns (see `RuntimeConfig::max_concurrent_turns`).
    pub turn_permits: tokio::sync::Semaphore,
    /// The running conversation supervisor (`None` while it restarts): where deliveries go.
    pub(super) conversations: RwLock<Option<ActorRef<SupervisorMsg>>>,
    /// The running outbox dispatcher (`None` while it restarts or after shutdown began).
    pub(super) outbox: RwLock<Option<ActorRef<DispatcherMsg>>>,
    /// Fast-path sends in flight, which a graceful shutdown waits for.
    pub(super) sends: Arc<InFlight>,
}

/// Counts tasks in flight and wakes a waiter when none are left.
#[derive(Default)]
pub(super) struct InFlight {
    count: AtomicUsize,
    idle: tokio::sync::Notify,
}

/// Held by a task in flight; dropping it ends the task's count.
pub(super) struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl InFlight {
    pub(super) fn start(self: &Arc<Self>) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self.clone())
    }

    /// Waits until nothing is in flight, or `limit` has passed; true when nothing is.
    pub(super) async fn drained(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.idle.notified();
                if self.count.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }
}

impl Shared {
    /// Hands the claimed rows of a committed turn to the dispatcher, to send now. Without a
    /// dispatcher (shutting down) they stay claimed, and the sweeps send them when the lease ends.
    pub fn send_claimed(&self, rows: Vec<crate::outbox::Claimed>) {
        let outbox = self.outbox.read().expect("outbox ref lock").clone();
        let rows = match outbox {
            Some(outbox) => match outbox.cast(DispatcherMsg::SendClaimed(rows)) {
                Ok(()) => return,
                Err(e) => match e {
                    ractor::MessagingErr::SendErr(DispatcherMsg::SendClaimed(rows)) => rows,
                    _ => return,
                },
            },
            None => rows,
        };
        // Stopping: give the rows back to the sweeps of the next process, due at once.
        let (pool, guard) = (self.pool.clone(), self.sends.start());
        tokio::spawn(async move {
            let _guard = guard;
            if let Err(e) = crate::outbox::release(&pool, &rows).await {
                tracing::warn!(error = %e, "claimed rows are sent after their lease ends");
            }
        });
    }

    pub fn wake_outbox(&self) {
        if let Some(outbox) = self.outbox.read().expect("outbox ref lock").as_ref() {
            let _ = outbox.cast(DispatcherMsg::Wake);
        }
    }

    /// Asks the conversation to run a turn (a handoff waiting, messages unprocessed); `false` while
    /// the supervisor is not running (recovery finds the conversation later).
    pub(super) fn deliver(&self, key: ConversationKey, seq: i64) -> bool {
        self.conversations()
            .is_some_and(|s| s.cast(SupervisorMsg::Deliver { key, seq }).is_ok())
    }

    pub(super) fn conversations(&self) -> Option<ActorRef<SupervisorMsg>> {
        self.conversations
            .read()
            .expect("conversations ref lock")
            .clone()
    }
}
