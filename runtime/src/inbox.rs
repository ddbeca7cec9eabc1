//! The inbox: what contacts send us and what providers tell us about our messages, made durable
//! before the provider is acknowledged.
//!
//! Channels (`channels` crate) parse provider payloads into the channel-neutral types here; the
//! webhook handlers hand them to [`store`], which, per receiving address:
//! - resolves the tenant from the address (never from anything else in the payload); an address no
//!   tenant owns is kept in `unroutable_events`;
//! - finds or creates the contact by its identities (phone, WhatsApp BSUID, email), merging two
//!   contacts when one payload shows they are the same person;
//! - upserts the contact's conversation and inserts the message, deduplicated by
//!   `UNIQUE (tenant_id, channel, provider_message_id)`;
//! - records delivery statuses and moves outbound messages' status forward only.
//!
//! The stored row is the queue: [`store`] returns the new messages that should cause a turn, and
//! whatever was not processed is found again on start-up.

use serde_json::Value;
use sqlx::PgPool;
use time::OffsetDateTime;

use crate::db::{TenantTx, begin_tenant, tenant_id_by_channel};
pub use crate::domain::{Channel, DeliveryStatus, MessageKind};
use crate::error::{Error, Result};
use crate::ids::{ContactId, ConversationId, MessageId, TenantId};

/// The ways a payload identifies its sender. At least one must be present.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContactIdentity {
    /// E.164 with a leading `+` (see [`normalize_phone`]).
    pub phone: Option<String>,
    /// WhatsApp's business-scoped user id, e.g. `US.13491208655302741918`.
    pub whatsapp_bsuid: Option<String>,
    pub email: Option<String>,
    /// The name a `wasit chat` user talks under (`--contact`).
    pub chat: Option<String>,
    /// The profile name the provider reported, if any.
    pub display_name: Option<String>,
}

impl ContactIdentity {
    fn pairs(&self) -> Vec<(&'static str, &str)> {
        let mut pairs = Vec::new();
        if let Some(p) = &self.phone {
            pairs.push(("phone", p.as_str()));
        }
        if let Some(b) = &self.whatsapp_bsuid {
            pairs.push(("whatsapp_bsuid", b.as_str()));
        }
        if let Some(e) = &self.email {
            pairs.push(("email", e.as_str()));
        }
        if let Some(c) = &self.chat {
            pairs.push(("chat", c.as_str()));
        }
        pairs
    }
}

/// `+` and the digits of a phone number, whatever punctuation it came with; the international
/// prefix `00` counts as `+` (E.164 numbers never start with 0). `None` without digits.
pub fn normalize_phone(raw: &str) -> Option<String> {
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.strip_prefix("00").unwrap_or(&digits);
    (!digits.is_empty()).then(|| format!("+{digits}"))
}

/// One message from a contact.
#[derive(Clone, Debug)]
pub struct InboundMessage {
    /// The provider's id (`wamid…`, `MessageSid`, `Message-ID`): the deduplication key.
    pub provider_message_id: String,
    pub from: ContactIdentity,
    pub kind: MessageKind,
    /// The text an agent reads: the body, a caption, a button's title.
    pub body: Option<String>,
    /// The provider's message object as received.
    pub payload: Value,
    pub provider_timestamp: Option<OffsetDateTime>,
    /// False for events that need no answer (a reaction): stored as already processed.
    pub triggers_turn: bool,
}

#[derive(Clone, Debug)]
pub struct StatusUpdate {
    pub provider_message_id: String,
    pub status: DeliveryStatus,
    pub provider_timestamp: Option<OffsetDateTime>,
    /// The provider's error objects, for `Failed`.
    pub errors: Option<Value>,
    pub payload: Value,
}

/// Everything one notification delivered to one receiving address.
#[derive(Clone, Debug)]
pub struct Batch {
    pub channel: Channel,
    /// The receiving address: a WhatsApp `phone_number_id`, an SMS number, an email address.
    pub address: String,
    pub messages: Vec<InboundMessage>,
    pub statuses: Vec<StatusUpdate>,
    /// The provider's object this batch came from, kept whole if it cannot be routed.
    pub raw: Value,
}

/// Part of a payload that could not be understood or routed; kept for an operator.
#[derive(Clone, Debug)]
pub struct Unroutable {
    pub channel: Channel,
    pub address: Option<String>,
    pub reason: String,
    pub payload: Value,
}

/// A newly stored message that should cause a turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub tenant: TenantId,
    pub contact: ContactId,
    pub conversation: ConversationId,
    pub message: MessageId,
    pub seq: i64,
}

/// What [`store`] did.
#[derive(Clone, Debug, Default)]
pub struct StoreOutcome {
    pub accepted: Vec<Accepted>,
    /// Messages that were stored before (provider retries, concurrent duplicates).
    pub duplicates: usize,
    pub statuses: usize,
    pub unroutable: usize,
}

/// Makes a notification durable: one transaction per receiving address. Returns once everything
/// is committed; an error means nothing of the failed batch was stored, and the provider should
/// be answered with an error so that it retries (duplicates are harmless).
pub async fn store(
    pool: &PgPool,
    batches: Vec<Batch>,
    rejects: Vec<Unroutable>,
) -> Result<StoreOutcome> {
    if let ([batch], []) = (batches.as_slice(), rejects.as_slice())
        && let Some(outcome) = receive_one(pool, batch).await?
    {
        return Ok(outcome);
    }
    let mut outcome = StoreOutcome::default();
    for reject in rejects {
        insert_unroutable(pool, &reject).await?;
        outcome.unroutable += 1;
    }
    for batch in batches {
        let Some(tenant) =
            tenant_id_by_channel(pool, batch.channel.as_str(), &batch.address).await?
        else {
            tracing::warn!(channel = batch.channel.as_str(), address = %batch.address, "notification for an address no tenant owns");
            insert_unroutable(
                pool,
                &Unroutable {
                    channel: batch.channel,
                    address: Some(batch.address.clone()),
                    reason: "no tenant owns this address".into(),
                    payload: batch.raw.clone(),
                },
            )
            .await?;
            outcome.unroutable += 1;
            continue;
        };
        let mut tx = begin_tenant(pool, tenant).await?;
        for message in &batch.messages {
            match store_message(&mut tx, tenant, batch.channel, &batch.address, message).await? {
                Some(accepted) if message.triggers_turn => outcome.accepted.push(accepted),
                Some(_) => {}
                None => outcome.duplicates += 1,
            }
        }
        for status in &batch.statuses {
            store_status(&mut tx, batch.channel, status).await?;
            outcome.statuses += 1;
        }
        tx.commit().await?;
    }
    Ok(outcome)
}

/// The common case in one round trip: a batch of one message and nothing else, stored with its
/// tenant resolved in the same statement (`wasit_receive_inbound`). `None` when the batch needs
/// the transactional path: more than one message, statuses, an address no tenant owns, or
/// contacts to merge (the function wrote nothing then).
async fn receive_one(pool: &PgPool, batch: &Batch) -> Result<Option<StoreOutcome>> {
    let ([m], []) = (batch.messages.as_slice(), batch.statuses.as_slice()) else {
        return Ok(None);
    };
    let Some((kinds, values)) = identity_arrays(&m.from) else {
        return Ok(None);
    };
    let (tenant, outcome, contact, conversation, message, seq): ReceivedRow = sqlx::query_as(
        "SELECT tenant_id, outcome, contact_id, conversation_id, message_id, seq
         FROM wasit_receive_inbound($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(batch.channel.as_str())
    .bind(&batch.address)
    .bind(&kinds)
    .bind(&values)
    .bind(&m.from.display_name)
    .bind(&m.provider_message_id)
    .bind(m.kind.as_str())
    .bind(&m.body)
    .bind(&m.payload)
    .bind(m.provider_timestamp)
    .bind(m.triggers_turn)
    .fetch_one(pool)
    .await?;
    let mut done = StoreOutcome::default();
    match (
        outcome.as_str(),
        tenant,
        contact,
        conversation,
        message,
        seq,
    ) {
        ("stored", Some(tenant), Some(contact), Some(conversation), Some(message), Some(seq)) => {
            if m.triggers_turn {
                done.accepted.push(Accepted {
                    tenant,
                    contact,
                    conversation,
                    message,
                    seq,
                });
            }
        }
        ("duplicate", ..) => done.duplicates = 1,
        _ => return Ok(None),
    }
    Ok(Some(done))
}

type ReceivedRow = (
    Option<TenantId>,
    String,
    Option<ContactId>,
    Option<ConversationId>,
    Option<MessageId>,
    Option<i64>,
);

/// A sender's identities as parallel, sorted arrays of kinds and values; `None` without any.
fn identity_arrays(from: &ContactIdentity) -> Option<(Vec<&str>, Vec<&str>)> {
    let mut pairs = from.pairs();
    if pairs.is_empty() {
        return None;
    }
    pairs.sort_unstable();
    Some(pairs.into_iter().unzip())
}

async fn insert_unroutable(pool: &PgPool, u: &Unroutable) -> Result<()> {
    sqlx::query(
        "INSERT INTO unroutable_events (channel, address, reason, payload) VALUES ($1, $2, $3, $4)",
    )
    .bind(u.channel.as_str())
    .bind(&u.address)
    .bind(&u.reason)
    .bind(&u.payload)
    .execute(pool)
    .await?;
    Ok(())
}

/// Inserts one inbound message; `None` when it was stored before. One round trip in the common
/// case (`wasit_store_inbound`); when the sender's identities belong to several contacts, they are
/// merged first and the insert is tried again.
async fn store_message(
    tx: &mut TenantTx,
    tenant: TenantId,
    channel: Channel,
    address: &str,
    m: &InboundMessage,
) -> Result<Option<Accepted>> {
    let (kinds, values) = identity_arrays(&m.from)
        .ok_or_else(|| Error::Invalid("a message without any sender identity".into()))?;
    for _ in 0..3 {
        let (outcome, contact, conversation, message, seq, merge): StoredRow = sqlx::query_as(
            "SELECT outcome, contact_id, conversation_id, message_id, seq, merge_ids
             FROM wasit_store_inbound($1,
                 (SELECT id FROM channel_accounts
                   WHERE tenant_id = wasit_current_tenant() AND channel = $1 AND address = $2),
                 $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(channel.as_str())
        .bind(address)
        .bind(&kinds)
        .bind(&values)
        .bind(&m.from.display_name)
        .bind(&m.provider_message_id)
        .bind(m.kind.as_str())
        .bind(&m.body)
        .bind(&m.payload)
        .bind(m.provider_timestamp)
        .bind(m.triggers_turn)
        .fetch_one(&mut **tx)
        .await?;
        match (outcome.as_str(), contact, conversation, message, seq) {
            ("stored", Some(contact), Some(conversation), Some(message), Some(seq)) => {
                return Ok(Some(Accepted {
                    tenant,
                    contact,
                    conversation,
                    message,
                    seq,
                }));
            }
            ("duplicate", ..) => return Ok(None),
            ("merge", ..) => {
                let ids = merge.unwrap_or_default();
                if let Some((&keep, others)) = ids.split_first() {
                    for &other in others {
                        merge_contacts(tx, other, keep).await?;
                    }
                }
            }
            (other, ..) => {
                return Err(Error::Invalid(format!(
                    "wasit_store_inbound answered {other:?}"
                )));
            }
        }
    }
    Err(Error::Conflict(
        "the sender's contacts could not be merged".into(),
    ))
}

type StoredRow = (
    String,
    Option<ContactId>,
    Option<ConversationId>,
    Option<MessageId>,
    Option<i64>,
    Option<Vec<ContactId>>,
);

/// Moves everything of contact `from` onto `into` and deletes `from`. When both have a
/// conversation, `from`'s messages and audited turns move into `into`'s conversation (turn numbers
/// shifted past `into`'s own).
async fn merge_contacts(tx: &mut TenantTx, from: ContactId, into: ContactId) -> Result<()> {
    tracing::info!(%from, %into, "merging contacts that share an identity");
    sqlx::query("UPDATE contact_identities SET contact_id = $2 WHERE tenant_id = wasit_current_tenant() AND contact_id = $1")
        .bind(from)
        .bind(into)
        .execute(&mut **tx)
        .await?;
    let conversation_of = |c: ContactId| {
        sqlx::query_scalar::<_, ConversationId>(
            "SELECT id FROM conversations WHERE tenant_id = wasit_current_tenant() AND contact_id = $1",
        )
        .bind(c)
    };
    let from_conv = conversation_of(from).fetch_optional(&mut **tx).await?;
    let into_conv = conversation_of(into).fetch_optional(&mut **tx).await?;
    match (from_conv, into_conv) {
        (Some(fc), None) => {
            sqlx::query("UPDATE conversations SET contact_id = $2, updated_at = now() WHERE tenant_id = wasit_current_tenant() AND id = $1")
                .bind(fc)
                .bind(into)
                .execute(&mut **tx)
                .await?;
        }
        (Some(fc), Some(ic)) => {
            for sql in [
                // Rolling summaries merge, and no moved message hides behind the target's summary:
                // the target's summary point moves before the first moved message that the
                // source's summary did not cover (before the messages move).
                "UPDATE conversations t SET
                     summary = left(nullif(concat_ws(E'\n', s.summary, t.summary), ''), 8000),
                     summary_through_seq = CASE WHEN t.summary_through_seq IS NULL THEN NULL
                         ELSE least(t.summary_through_seq, coalesce(
                             (SELECT min(m.seq) - 1 FROM messages m
                              WHERE m.tenant_id = wasit_current_tenant() AND m.conversation_id = $1
                                AND m.seq > coalesce(s.summary_through_seq, 0)),
                             t.summary_through_seq)) END
                 FROM conversations s
                 WHERE t.tenant_id = wasit_current_tenant() AND t.id = $2
                   AND s.tenant_id = wasit_current_tenant() AND s.id = $1",
                "UPDATE messages SET conversation_id = $2 WHERE tenant_id = wasit_current_tenant() AND conversation_id = $1",
                "UPDATE ai_conversations SET conversation_id = $2,
                     turn_seq = turn_seq + (SELECT turn_seq FROM conversations WHERE tenant_id = wasit_current_tenant() AND id = $2)
                                         + (SELECT turn_seq FROM conversations WHERE tenant_id = wasit_current_tenant() AND id = $1)
                 WHERE tenant_id = wasit_current_tenant() AND conversation_id = $1",
                "UPDATE conversations SET turn_seq = turn_seq + (SELECT turn_seq FROM conversations WHERE tenant_id = wasit_current_tenant() AND id = $1) * 2,
                     needs_human = needs_human OR (SELECT needs_human FROM conversations WHERE tenant_id = wasit_current_tenant() AND id = $1),
                     status = CASE WHEN (SELECT status FROM conversations WHERE tenant_id = wasit_current_tenant() AND id = $1) = 'escalated'
                                   THEN 'escalated' ELSE status END,
                     owner_user_id = coalesce(owner_user_id, (SELECT owner_user_id FROM conversations WHERE tenant_id = wasit_current_tenant() AND id = $1)),
                     updated_at = now()
                 WHERE tenant_id = wasit_current_tenant() AND id = $2",
                "UPDATE dead_letters SET conversation_id = $2 WHERE tenant_id = wasit_current_tenant() AND conversation_id = $1",
                "DELETE FROM conversations WHERE tenant_id = wasit_current_tenant() AND id = $1",
            ] {
                sqlx::query(sql).bind(fc).bind(ic).execute(&mut **tx).await?;
            }
        }
        (None, _) => {}
    }
    sqlx::query(
        "UPDATE contacts SET
             display_name = coalesce(display_name, (SELECT display_name FROM contacts WHERE tenant_id = wasit_current_tenant() AND id = $2)),
             locale = coalesce(locale, (SELECT locale FROM contacts WHERE tenant_id = wasit_current_tenant() AND id = $2)),
             updated_at = now()
         WHERE tenant_id = wasit_current_tenant() AND id = $1",
    )
    .bind(into)
    .bind(from)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO contact_merges (tenant_id, kept_contact_id, merged_contact_id, reason)
         VALUES (wasit_current_tenant(), $1, $2, 'one payload carried identities of both')",
    )
    .bind(into)
    .bind(from)
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM contacts WHERE tenant_id = wasit_current_tenant() AND id = $1")
        .bind(from)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Records a status notification and moves the message's status forward (never back).
async fn store_status(tx: &mut TenantTx, channel: Channel, s: &StatusUpdate) -> Result<()> {
    sqlx::query(
        "INSERT INTO message_statuses (tenant_id, channel, provider_message_id, status, provider_timestamp, errors, payload)
         VALUES (wasit_current_tenant(), $1, $2, $3, $4, $5, $6)
         ON CONFLICT (tenant_id, channel, provider_message_id, status) DO NOTHING",
    )
    .bind(channel.as_str())
    .bind(&s.provider_message_id)
    .bind(s.status.as_str())
    .bind(s.provider_timestamp)
    .bind(&s.errors)
    .bind(&s.payload)
    .execute(&mut **tx)
    .await?;
    apply_statuses(tx, channel, &s.provider_message_id).await
}

/// Sets an outbound message's status from every status event known for it: the furthest of
/// sent/delivered/read wins; `failed` applies only if nothing got further than `sent`. Called when
/// a status arrives and when the dispatcher learns a message's provider id (a status may overtake
/// the send's own response).
pub async fn apply_statuses(
    tx: &mut TenantTx,
    channel: Channel,
    provider_message_id: &str,
) -> Result<()> {
    sqlx::query(
        "WITH best AS (
             SELECT max(wasit_status_rank(status)) AS rank,
                    bool_or(status = 'failed') AS failed,
                    (array_agg(errors) FILTER (WHERE status = 'failed'))[1] AS errors
             FROM message_statuses
             WHERE tenant_id = wasit_current_tenant() AND channel = $1 AND provider_message_id = $2)
         UPDATE messages m SET
             status = CASE
                 WHEN best.rank IS NOT NULL AND best.rank > coalesce(wasit_status_rank(m.status), -1)
                      AND best.rank >= 2 THEN (ARRAY['queued', 'sent', 'delivered', 'read'])[best.rank + 1]
                 WHEN best.failed AND coalesce(wasit_status_rank(m.status), 0) <= 1 THEN 'failed'
                 WHEN best.rank IS NOT NULL AND best.rank > coalesce(wasit_status_rank(m.status), -1)
                      THEN (ARRAY['queued', 'sent', 'delivered', 'read'])[best.rank + 1]
                 ELSE m.status END,
             error = CASE WHEN best.failed THEN best.errors ELSE m.error END
         FROM best
         WHERE m.tenant_id = wasit_current_tenant() AND m.channel = $1
           AND m.provider_message_id = $2 AND m.direction = 'outbound'",
    )
    .bind(channel.as_str())
    .bind(provider_message_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_normalise_to_plus_and_digits() {
        assert_eq!(
            normalize_phone("16505551234").as_deref(),
            Some("+16505551234")
        );
        assert_eq!(
            normalize_phone("+966 50-000 0001").as_deref(),
            Some("+966500000001")
        );
        assert_eq!(
            normalize_phone("00966 500000001").as_deref(),
            Some("+966500000001")
        );
        assert_eq!(normalize_phone("abc"), None);
    }
}
