//! The audit log: who changed what, written in the same transaction as the change.

use runtime::db::TenantTx;
use serde::Serialize;
use serde_json::{Value, json};

use crate::auth::AuthUser;

/// The record as the audit log keeps it. The API's records always serialise; if one ever did
/// not, the change is still audited, with the reason in place of the record.
fn snapshot(record: &impl Serialize) -> Value {
    serde_json::to_value(record).unwrap_or_else(|e| json!({"unserializable": e.to_string()}))
}

/// Records one change by `actor` to `entity` `id`, with the record before and after.
pub async fn record(
    tx: &mut TenantTx,
    actor: &AuthUser,
    action: &str,
    entity: &str,
    id: uuid::Uuid,
    before: &impl Serialize,
    after: &impl Serialize,
) -> runtime::Result<()> {
    insert(
        tx,
        actor,
        action,
        entity,
        id,
        Some(snapshot(before)),
        snapshot(after),
    )
    .await
}

/// Records an action that has no "before": a creation, or an event such as a refund.
pub async fn record_new(
    tx: &mut TenantTx,
    actor: &AuthUser,
    action: &str,
    entity: &str,
    id: uuid::Uuid,
    after: &impl Serialize,
) -> runtime::Result<()> {
    insert(tx, actor, action, entity, id, None, snapshot(after)).await
}

async fn insert(
    tx: &mut TenantTx,
    actor: &AuthUser,
    action: &str,
    entity: &str,
    id: uuid::Uuid,
    before: Option<Value>,
    after: Value,
) -> runtime::Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (tenant_id, actor_user_id, actor_role, action, entity, entity_id, before, after)
         VALUES (wasit_current_tenant(), $1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(actor.user.map(|u| u.0))
    .bind(actor.role.as_str())
    .bind(action)
    .bind(entity)
    .bind(id)
    .bind(before)
    .bind(after)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
