//! The outbox: every message to a provider is a row committed with the turn that produced it, and
//! is sent from here at least once. A row is claimed with a lease (so one sender at a time, and a
//! crashed sender's rows come back), sent through the channel's [`ChannelSender`], and its result
//! recorded: sent (with the provider's id), retried later with backoff and jitter, closed (the
//! 24-hour window), or failed.
//!
//! The Graph API has no idempotency key, so a process that dies between a provider's acceptance
//! and the recording of it sends that row again after the lease: at least once. Everything else is
//! exactly once per idempotency key (`UNIQUE (tenant_id, idempotency_key)`).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;

use crate::db::begin_tenant;
use crate::error::Result;
use crate::ids::{MessageId, TenantId};
use crate::inbox::{Channel, apply_statuses};

/// A channel account as a sender needs it.
#[derive(Clone)]
pub struct ChannelAccount {
    pub id: uuid::Uuid,
    /// WhatsApp `phone_number_id`, SMS number, email address.
    pub address: String,
    /// Provider credentials (access token, account sid, …).
    pub credentials: Value,
}

impl ChannelAccount {
    /// From the columns of an outer join: `None` when there is no account.
    pub fn from_row(
        id: Option<uuid::Uuid>,
        address: Option<String>,
        credentials: Option<Value>,
    ) -> Option<Self> {
        Some(Self {
            id: id?,
            address: address?,
            credentials: credentials?,
        })
    }
}

impl std::fmt::Debug for ChannelAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelAccount")
            .field("id", &self.id)
            .field("address", &self.address)
            .field("credentials", &"[redacted]")
            .finish()
    }
}

/// Why a send failed, as far as the outbox is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendFailure {
    Retryable {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Outside the 24-hour window: only a template may be sent now.
    WindowClosed {
        message: String,
    },
    Permanent {
        message: String,
    },
}

pub type SendFuture =
    Pin<Box<dyn Future<Output = std::result::Result<String, SendFailure>> + Send>>;

/// Sends one outbox payload on one channel; returns the provider's message id.
pub trait ChannelSender: Send + Sync + 'static {
    fn channel(&self) -> Channel;
    fn send(&self, account: ChannelAccount, payload: Value, idempotency_key: String) -> SendFuture;
}

/// The senders of every configured channel.
#[derive(Clone, Default)]
pub struct Senders(HashMap<Channel, Arc<dyn ChannelSender>>);

impl std::fmt::Debug for Senders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl Senders {
    pub fn with(mut self, sender: Arc<dyn ChannelSender>) -> Self {
        self.0.insert(sender.channel(), sender);
        self
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<dyn ChannelSender>> {
        self.0.values()
    }

    fn get(&self, channel: Channel) -> Option<&Arc<dyn ChannelSender>> {
        self.0.get(&channel)
    }
}

/// Retry and batching policy.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// How long a claimed row is reserved for its sender.
    pub lease: Duration,
    pub max_attempts: i32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Rows sent at once.
    pub concurrency: usize,
    /// How often the dispatcher looks for due rows without being woken.
    pub poll_interval: Duration,
    /// The longest one send may take, pacing included, before it counts as a retryable failure.
    pub send_timeout: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(60),
            max_attempts: 12,
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            concurrency: 16,
            poll_interval: Duration::from_millis(500),
            send_timeout: Duration::from_secs(45),
        }
    }
}

/// Exponential backoff with ±20 % jitter; a provider's `Retry-After` wins when longer.
pub fn backoff(config: &OutboxConfig, attempts: i32, retry_after: Option<Duration>) -> Duration {
    let exp = config
        .base_backoff
        .saturating_mul(1u32 << attempts.clamp(1, 20).saturating_sub(1));
    let capped = exp.min(config.max_backoff);
    let mut byte = [0u8; 1];
    getrandom::fill(&mut byte).unwrap_or_default();
    let jitter = 0.8 + 0.4 * f64::from(byte[0]) / 255.0;
    let jittered = capped.mul_f64(jitter);
    retry_after.map_or(jittered, |r| jittered.max(r))
}

/// What sending needs: the pool, the channels' senders, the policy, and the recorder that
/// writes successful sends down in batches. Cheap to clone; the recorder stops when the last
/// clone is dropped.
#[derive(Clone)]
pub struct Dispatch {
    pub pool: PgPool,
    pub senders: Senders,
    pub config: OutboxConfig,
    recorder: Recorder,
}

impl std::fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatch")
            .field("senders", &self.senders)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Dispatch {
    /// Starts the recorder; call inside a Tokio runtime.
    pub fn new(pool: PgPool, senders: Senders, config: OutboxConfig) -> Self {
        let recorder = Recorder::start(pool.clone());
        Self {
            pool,
            senders,
            config,
            recorder,
        }
    }
}

/// A send the provider accepted, to be recorded.
#[derive(Debug)]
struct Sent {
    tenant: TenantId,
    id: uuid::Uuid,
    attempts: i32,
    provider_id: String,
}

type RecordRequest = (Sent, tokio::sync::oneshot::Sender<Result<()>>);

/// Records accepted sends. Each sender waits for its own record, but sends that finish while a
/// record is being written are written together by the next one (one transaction per tenant),
/// so under load the cost per send falls instead of the queue growing.
#[derive(Clone)]
struct Recorder(tokio::sync::mpsc::UnboundedSender<RecordRequest>);

/// Sends recorded in one statement at most.
const RECORD_BATCH: usize = 256;

impl Recorder {
    fn start(pool: PgPool) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<RecordRequest>();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(RECORD_BATCH);
            while rx.recv_many(&mut batch, RECORD_BATCH).await > 0 {
                let mut by_tenant: HashMap<TenantId, Vec<RecordRequest>> = HashMap::new();
                for request in batch.drain(..) {
                    by_tenant.entry(request.0.tenant).or_default().push(request);
                }
                for (tenant, requests) in by_tenant {
                    let sends: Vec<&Sent> = requests.iter().map(|(s, _)| s).collect();
                    let result = record_sent(&pool, tenant, &sends).await;
                    for (_, reply) in requests {
                        let _ = reply.send(match &result {
                            Ok(()) => Ok(()),
                            Err(e) => Err(crate::Error::Unavailable(format!(
                                "the send could not be recorded: {e}"
                            ))),
                        });
                    }
                }
            }
        });
        Self(tx)
    }

    async fn record(&self, sent: Sent) -> Result<()> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.0
            .send((sent, reply))
            .map_err(|_| crate::Error::Unavailable("the outbox recorder has stopped".into()))?;
        answer
            .await
            .map_err(|_| crate::Error::Unavailable("the outbox recorder has stopped".into()))?
    }
}

/// Marks sends of one tenant sent, fenced by their attempts, with their messages' provider ids;
/// applies statuses that overtook the answers.
async fn record_sent(pool: &PgPool, tenant: TenantId, sends: &[&Sent]) -> Result<()> {
    let mut tx = begin_tenant(pool, tenant).await?;
    let overtaken: Vec<(String, String)> = sqlx::query_as(
        "WITH r AS (
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[]) AS r(id, provider_id, attempts)),
         sent AS (
             UPDATE outbox o SET state = 'sent', provider_message_id = r.provider_id, sent_at = now(),
                                 last_error = NULL
             FROM r
             WHERE o.tenant_id = wasit_current_tenant() AND o.id = r.id
               AND o.state = 'pending' AND o.attempts = r.attempts
             RETURNING o.message_id, o.provider_message_id),
         message AS (
             UPDATE messages m SET provider_message_id = s.provider_message_id,
                 status = CASE WHEN coalesce(wasit_status_rank(m.status), 0) < 1 THEN 'sent' ELSE m.status END
             FROM sent s
             WHERE m.tenant_id = wasit_current_tenant() AND m.id = s.message_id
             RETURNING m.channel, m.provider_message_id)
         SELECT m.channel, m.provider_message_id FROM message m
         WHERE EXISTS (SELECT 1 FROM message_statuses st
                       WHERE st.tenant_id = wasit_current_tenant() AND st.channel = m.channel
                         AND st.provider_message_id = m.provider_message_id)",
    )
    .bind(sends.iter().map(|s| s.id).collect::<Vec<_>>())
    .bind(sends.iter().map(|s| s.provider_id.as_str()).collect::<Vec<_>>())
    .bind(sends.iter().map(|s| s.attempts).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;
    for (channel, provider_id) in overtaken {
        // Statuses that arrived before the send's own answer are applied now.
        let channel = Channel::parse(&channel).unwrap_or(Channel::Whatsapp);
        apply_statuses(&mut tx, channel, &provider_id).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// What a sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepStats {
    pub sent: usize,
    pub retried: usize,
    pub failed: usize,
}

/// Sends every row that is due now, `config.concurrency` at a time.
pub async fn sweep(d: &Dispatch) -> Result<SweepStats> {
    let (pool, config) = (&d.pool, &d.config);
    let mut stats = SweepStats::default();
    loop {
        let due: Vec<(TenantId, uuid::Uuid)> =
            sqlx::query_as("SELECT tenant_id, id FROM wasit_due_outbox($1)")
                .bind(i32::try_from(config.concurrency * 4).unwrap_or(128))
                .fetch_all(pool)
                .await?;
        if due.is_empty() {
            return Ok(stats);
        }
        let limit = Arc::new(tokio::sync::Semaphore::new(config.concurrency));
        let mut tasks = tokio::task::JoinSet::new();
        for (tenant, id) in due {
            let (d, limit) = (d.clone(), limit.clone());
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                send_one(&d, tenant, id).await
            });
        }
        let mut progressed = false;
        while let Some(result) = tasks.join_next().await {
            match result {
                Ok(Ok(Some(Outcome::Sent))) => {
                    stats.sent += 1;
                    progressed = true;
                }
                Ok(Ok(Some(Outcome::Retry))) => stats.retried += 1,
                Ok(Ok(Some(Outcome::Failed))) => {
                    stats.failed += 1;
                    progressed = true;
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "outbox send could not be recorded"),
                Err(e) => tracing::error!(error = %e, "outbox send task failed"),
            }
        }
        // Rows that were only rescheduled are not due again now: stop rather than spin.
        if !progressed {
            return Ok(stats);
        }
    }
}

type ClaimRow = (
    Channel,
    Value,
    i32,
    Option<MessageId>,
    String,
    Option<uuid::Uuid>,
    Option<String>,
    Option<Value>,
);

/// An outbox row its holder may send now: claimed by a sweep, or committed already claimed by the
/// turn that produced it (the fast path, which saves a claim round trip per message). Its
/// `attempts` fences the recording: only the holder of this attempt may record its result.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub tenant: TenantId,
    pub id: uuid::Uuid,
    pub channel: Channel,
    pub payload: Value,
    pub attempts: i32,
    pub message: Option<MessageId>,
    pub key: String,
    /// The tenant's account to send from; `None` when the tenant has none for the channel.
    pub account: Option<ChannelAccount>,
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    Retry,
    Failed,
}

async fn send_one(d: &Dispatch, tenant: TenantId, id: uuid::Uuid) -> Result<Option<Outcome>> {
    let (pool, config) = (&d.pool, &d.config);
    // Claim: one sender at a time, for the length of the lease.
    let mut tx = begin_tenant(pool, tenant).await?;
    let claimed: Option<ClaimRow> = sqlx::query_as(
        "WITH claimed AS (
             UPDATE outbox SET attempts = attempts + 1, next_attempt_at = now() + make_interval(secs => $2)
             WHERE tenant_id = wasit_current_tenant() AND id = $1 AND state = 'pending' AND next_attempt_at <= now()
             RETURNING channel, payload, attempts, message_id, idempotency_key)
         SELECT claimed.*, a.id, a.address, a.credentials
         FROM claimed LEFT JOIN LATERAL (
             SELECT id, address, credentials FROM channel_accounts
             WHERE tenant_id = wasit_current_tenant() AND channel = claimed.channel
               AND (claimed.payload->>'channel_account_id' IS NULL OR id = (claimed.payload->>'channel_account_id')::uuid)
             ORDER BY created_at LIMIT 1) a ON true",
    )
    .bind(id)
    .bind(config.lease.as_secs_f64())
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    let Some((channel, payload, attempts, message, key, account_id, address, credentials)) =
        claimed
    else {
        return Ok(None);
    };
    let row = Claimed {
        tenant,
        id,
        channel,
        payload,
        attempts,
        message,
        key,
        account: ChannelAccount::from_row(account_id, address, credentials),
    };
    deliver(d, row).await.map(Some)
}

/// Sends rows a turn committed already claimed, in order (they are the parts of one reply). If
/// one is not sent, the rest are released to the sweeps at once, which keep them behind it.
pub async fn send_claimed(d: &Dispatch, rows: Vec<Claimed>) -> Result<()> {
    let mut rows = rows.into_iter();
    while let Some(row) = rows.next() {
        if deliver(d, row).await? != Outcome::Sent {
            let rest: Vec<Claimed> = rows.collect();
            release(&d.pool, &rest).await?;
            break;
        }
    }
    Ok(())
}

/// Gives claimed rows (of one tenant) back to the sweeps: due now, their unused attempt not
/// counted.
pub async fn release(pool: &PgPool, rows: &[Claimed]) -> Result<()> {
    let Some(first) = rows.first() else {
        return Ok(());
    };
    let (ids, attempts): (Vec<uuid::Uuid>, Vec<i32>) =
        rows.iter().map(|r| (r.id, r.attempts)).unzip();
    let mut tx = begin_tenant(pool, first.tenant).await?;
    sqlx::query(
        "UPDATE outbox o SET next_attempt_at = now(), attempts = o.attempts - 1
         FROM unnest($1::uuid[], $2::int[]) AS r(id, attempts)
         WHERE o.tenant_id = wasit_current_tenant() AND o.id = r.id
           AND o.state = 'pending' AND o.attempts = r.attempts",
    )
    .bind(&ids)
    .bind(&attempts)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Sends one claimed row and records the result, fenced by its attempt.
async fn deliver(d: &Dispatch, row: Claimed) -> Result<Outcome> {
    let (pool, senders, config) = (&d.pool, &d.senders, &d.config);
    let (tenant, id, attempts, message, key) =
        (row.tenant, row.id, row.attempts, row.message, row.key);
    let (channel, payload) = (row.channel, row.payload);
    let result = match (senders.get(channel), row.account) {
        (None, _) => Err(SendFailure::Retryable {
            message: format!("no sender for the {channel} channel is configured"),
            retry_after: None,
        }),
        (_, None) => Err(SendFailure::Permanent {
            message: format!("the tenant has no {channel} account"),
        }),
        (Some(sender), Some(account)) => {
            // A bound on the whole send (pacing included), so one stuck call cannot stall a sweep.
            let send = sender.send(account, payload, key.clone());
            tokio::time::timeout(config.send_timeout, send)
                .await
                .unwrap_or_else(|_| {
                    Err(SendFailure::Retryable {
                        message: format!("no answer within {:?}", config.send_timeout),
                        retry_after: None,
                    })
                })
        }
    };

    let result = match result {
        Ok(provider_id) => {
            // Recorded with whatever else was sent meanwhile: one statement for many sends.
            d.recorder
                .record(Sent {
                    tenant,
                    id,
                    attempts,
                    provider_id,
                })
                .await?;
            tracing::debug!(%tenant, outbox = %id, key, "sent");
            return Ok(Outcome::Sent);
        }
        Err(failure) => failure,
    };
    let mut tx = begin_tenant(pool, tenant).await?;
    let outcome = match result {
        SendFailure::Retryable {
            message: reason,
            retry_after,
        } if attempts < config.max_attempts => {
            let delay = backoff(config, attempts, retry_after);
            sqlx::query(
                "UPDATE outbox SET next_attempt_at = now() + make_interval(secs => $2), last_error = $3
                 WHERE tenant_id = wasit_current_tenant() AND id = $1 AND state = 'pending' AND attempts = $4",
            )
            .bind(id)
            .bind(delay.as_secs_f64())
            .bind(&reason)
            .bind(attempts)
            .execute(&mut *tx)
            .await?;
            tracing::info!(%tenant, outbox = %id, attempts, ?delay, reason, "send will be retried");
            Outcome::Retry
        }
        failure => {
            let (state, reason) = match failure {
                SendFailure::WindowClosed { message } => ("window_closed", message),
                SendFailure::Permanent { message } => ("failed", message),
                SendFailure::Retryable { message, .. } => (
                    "failed",
                    format!("gave up after {attempts} attempts: {message}"),
                ),
            };
            // Fenced like the others: only the claim that made this attempt may record it.
            sqlx::query(
                "UPDATE outbox SET state = $2, last_error = $3
                 WHERE tenant_id = wasit_current_tenant() AND id = $1 AND state = 'pending' AND attempts = $4",
            )
            .bind(id)
            .bind(state)
            .bind(&reason)
            .bind(attempts)
            .execute(&mut *tx)
                .await?;
            if let Some(message) = message {
                sqlx::query(
                    "UPDATE messages SET status = $2, error = jsonb_build_object('reason', $3::text)
                     WHERE tenant_id = wasit_current_tenant() AND id = $1",
                )
                .bind(message)
                .bind(state)
                .bind(&reason)
                .execute(&mut *tx)
                .await?;
            }
            tracing::warn!(%tenant, outbox = %id, state, reason, "send gave up");
            Outcome::Failed
        }
    };
    tx.commit().await?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_jittered_and_honours_retry_after() {
        let config = OutboxConfig {
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            ..Default::default()
        };
        let first = backoff(&config, 1, None);
        assert!(
            first >= Duration::from_millis(800) && first <= Duration::from_millis(1200),
            "{first:?}"
        );
        let fourth = backoff(&config, 4, None);
        assert!(
            fourth >= Duration::from_millis(6400) && fourth <= Duration::from_millis(9600),
            "{fourth:?}"
        );
        let capped = backoff(&config, 30, None);
        assert!(capped <= Duration::from_secs(72), "{capped:?}");
        assert!(backoff(&config, 1, Some(Duration::from_secs(30))) >= Duration::from_secs(30));
    }
}
