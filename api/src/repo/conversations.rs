//! The conversations reps read: the list with filters, one conversation's messages, and the audit
//! of its AI turns.

use runtime::db::TenantTx;
use runtime::{ContactId, ConversationId, UserId};
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use super::Cursor;

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Conversation {
    pub id: ConversationId,
    pub contact_id: ContactId,
    pub contact_name: Option<String>,
    pub channel: String,
    pub status: String,
    pub needs_human: bool,
    pub owner_user_id: Option<UserId>,
    pub active_agent: String,
    pub turns: i64,
    /// When a scheduled follow-up comes back to the contact (if they do not write first).
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_follow_up_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_inbound_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

const SELECT: &str =
    "SELECT v.id, v.contact_id, c.display_name AS contact_name, v.channel, v.status,
        v.needs_human, v.owner_user_id, v.active_agent, v.turn_seq AS turns,
        (SELECT f.due_at FROM follow_ups f WHERE f.tenant_id = v.tenant_id
           AND f.conversation_id = v.id AND f.status = 'pending') AS next_follow_up_at,
        v.last_inbound_at, v.created_at, v.updated_at
    FROM conversations v JOIN contacts c ON c.tenant_id = v.tenant_id AND c.id = v.contact_id";

pub async fn find(tx: &mut TenantTx, id: ConversationId) -> runtime::Result<Conversation> {
    sqlx::query_as::<_, Conversation>(&format!(
        "{SELECT} WHERE v.tenant_id = wasit_current_tenant() AND v.id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(runtime::Error::NotFound("conversation"))
}

/// Hands a conversation a person has back to the agents: open again, no owner, and the agent
/// that escalated it (or the one it was with) answers the next message. `Conflict` when no person
/// has it.
pub async fn hand_back(tx: &mut TenantTx, id: ConversationId) -> runtime::Result<Conversation> {
    let handed = sqlx::query(
        "UPDATE conversations SET status = 'open', needs_human = false, owner_user_id = NULL,
             active_agent = coalesce(escalated_from, active_agent), escalated_from = NULL,
             handoff_from = NULL, handoff_reason = NULL, handoff_hops = 0,
             turns_without_progress = 0, updated_at = now()
         WHERE tenant_id = wasit_current_tenant() AND id = $1
           AND (status = 'escalated' OR owner_user_id IS NOT NULL)",
    )
    .bind(id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    let conversation = find(tx, id).await?;
    if handed == 0 {
        return Err(runtime::Error::Conflict(
            "the conversation is with the agents already".into(),
        ));
    }
    Ok(conversation)
}

#[derive(Debug, Default)]
pub struct Filter {
    pub status: Option<String>,
    pub needs_human: Option<bool>,
    pub owner_user_id: Option<UserId>,
    pub channel: Option<String>,
}

/// Most recently active first; the cursor is (updated_at, id).
pub async fn list(
    tx: &mut TenantTx,
    f: &Filter,
    after: Option<Cursor>,
    limit: i64,
) -> runtime::Result<Vec<Conversation>> {
    Ok(sqlx::query_as::<_, Conversation>(&format!(
        "{SELECT}
         WHERE v.tenant_id = wasit_current_tenant()
           AND ($1::text IS NULL OR v.status = $1)
           AND ($2::bool IS NULL OR v.needs_human = $2)
           AND ($3::uuid IS NULL OR v.owner_user_id = $3)
           AND ($4::text IS NULL OR v.channel = $4)
           AND ($5::timestamptz IS NULL OR (v.updated_at, v.id) < ($5, $6))
         ORDER BY v.updated_at DESC, v.id DESC
         LIMIT $7"
    ))
    .bind(&f.status)
    .bind(f.needs_human)
    .bind(f.owner_user_id)
    .bind(&f.channel)
    .bind(after.map(|c| c.created_at))
    .bind(after.map(|c| c.id))
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Message {
    pub id: uuid::Uuid,
    pub seq: i64,
    pub direction: String,
    pub channel: String,
    pub kind: String,
    pub body: Option<String>,
    pub status: String,
    pub error: Option<Value>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub processed_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Up to `limit` messages of the conversation after sequence `after`, oldest first.
pub async fn messages(
    tx: &mut TenantTx,
    id: ConversationId,
    after: Option<i64>,
    limit: i64,
) -> runtime::Result<Vec<Message>> {
    find(tx, id).await?;
    Ok(sqlx::query_as::<_, Message>(
        "SELECT id, seq, direction, channel, kind, body, status, error, processed_at, created_at
         FROM messages
         WHERE tenant_id = wasit_current_tenant() AND conversation_id = $1 AND seq > $2
         ORDER BY seq LIMIT $3",
    )
    .bind(id)
    .bind(after.unwrap_or(0))
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}

/// One AI turn as audited.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Turn {
    pub turn_seq: i64,
    pub agent: String,
    pub prompt_version: String,
    pub model: String,
    pub tokens_in: i32,
    pub tokens_out: i32,
    pub latency_ms: i32,
    pub tool_calls: Value,
    pub outcome: Value,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Up to `limit` turns after turn `after`, in order.
pub async fn turns(
    tx: &mut TenantTx,
    id: ConversationId,
    after: Option<i64>,
    limit: i64,
) -> runtime::Result<Vec<Turn>> {
    find(tx, id).await?;
    Ok(sqlx::query_as::<_, Turn>(
        "SELECT turn_seq, agent, prompt_version, model, tokens_in, tokens_out, latency_ms, tool_calls,
                outcome, created_at
         FROM ai_conversations
         WHERE tenant_id = wasit_current_tenant() AND conversation_id = $1 AND turn_seq > $2
         ORDER BY turn_seq LIMIT $3",
    )
    .bind(id)
    .bind(after.unwrap_or(0))
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}
