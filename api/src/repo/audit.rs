//! The audit log: who changed what, written in the same transaction as the change.

use runtime::db::TenantTx;
use serde_json::Value;

use crate::auth::AuthUser;

/// Records one change by `actor` to `entity` `id`, with the record before (`None` for a creation)
/// and after.
pub async fn record(
    tx: &mut TenantTx,
    actor: &AuthUser,
    action: &str,
    entity: &str,
    id: uuid::Uuid,
    before: Option<&Value>,
    after: &Value,
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
