//! Dead letters: messages that could not be processed, set aside for a person so that they never
//! block their conversation and are never silently lost.

use sqlx::PgPool;

use crate::db::begin_tenant;
use crate::error::Result;
use crate::ids::{ConversationId, TenantId};

/// Records a message that could not be processed (it crashed its conversation repeatedly, or the
/// agent kept failing): a dead letter, the message marked processed so it does not block the
/// conversation, and the conversation flagged for a human.
pub async fn dead_letter(
    pool: &PgPool,
    tenant: TenantId,
    conversation: ConversationId,
    reason: &str,
    attempts: i32,
) -> Result<usize> {
    let mut tx = begin_tenant(pool, tenant).await?;
    let rows = sqlx::query(
        "WITH stuck AS (
             UPDATE messages SET processed_at = now()
             WHERE tenant_id = wasit_current_tenant() AND conversation_id = $1
               AND direction = 'inbound' AND processed_at IS NULL
             RETURNING id, seq, body, kind)
         INSERT INTO dead_letters (tenant_id, conversation_id, message_id, source, reason, attempts, payload)
         SELECT wasit_current_tenant(), $1, id, 'conversation', $2, $3, jsonb_build_object('seq', seq, 'kind', kind, 'body', body)
         FROM stuck",
    )
    .bind(conversation)
    .bind(reason)
    .bind(attempts)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query(
        "UPDATE conversations SET needs_human = true, status = 'escalated', updated_at = now()
         WHERE tenant_id = wasit_current_tenant() AND id = $1",
    )
    .bind(conversation)
    .execute(&mut *tx)
    .await?;
    sqlx::query("SELECT wasit_notify_escalation($1, $2)")
        .bind(conversation)
        .bind(format!("messages could not be processed: {reason}"))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(usize::try_from(rows).unwrap_or(0))
}
