//! Channel accounts: the business numbers and addresses that route to a tenant.

use runtime::db::TenantTx;
use uuid::Uuid;

/// Binds `address` on `channel` to the transaction's tenant. An address belongs to one tenant
/// only; binding it twice is a conflict.
pub async fn add(
    tx: &mut TenantTx,
    channel: &str,
    address: &str,
    display_name: Option<&str>,
    credentials: &serde_json::Value,
) -> runtime::Result<Uuid> {
    sqlx::query_scalar(
        "INSERT INTO channel_accounts (tenant_id, channel, address, display_name, credentials)
         VALUES (wasit_current_tenant(), $1, $2, $3, $4) RETURNING id",
    )
    .bind(channel)
    .bind(address)
    .bind(display_name)
    .bind(credentials)
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| match runtime::Error::from(e) {
        e if e.is_unique_violation() => runtime::Error::Conflict(format!(
            "{channel} address {address:?} is already bound to a tenant"
        )),
        e => e,
    })
}
