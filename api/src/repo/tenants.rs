//! Tenants. Creating one is an operator action on the admin pool; reading one is tenant-scoped.

use runtime::db::{TenantTx, begin_tenant};
use runtime::{TenantId, TenantSlug};
use sqlx::PgPool;

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct Tenant {
    pub id: TenantId,
    pub slug: String,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
}

/// Creates a tenant. Row-level security is forced on `tenants` too, so the insert runs inside a
/// transaction scoped to the new tenant's id.
pub async fn create(admin: &PgPool, slug: &TenantSlug, name: &str) -> runtime::Result<Tenant> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(runtime::Error::Invalid(
            "a tenant name has 1 to 200 characters".into(),
        ));
    }
    let id = TenantId::new();
    let mut tx = begin_tenant(admin, id).await?;
    let tenant = sqlx::query_as::<_, Tenant>(
        "INSERT INTO tenants (id, slug, name) VALUES ($1, $2, $3) RETURNING id, slug, name, created_at",
    )
    .bind(id)
    .bind(slug.as_str())
    .bind(name)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| match runtime::Error::from(e) {
        e if e.is_unique_violation() => {
            runtime::Error::Conflict(format!("a tenant with slug '{slug}' already exists"))
        }
        e => e,
    })?;
    tx.commit().await?;
    Ok(tenant)
}

/// The tenant of the transaction.
pub async fn current(tx: &mut TenantTx) -> runtime::Result<Tenant> {
    sqlx::query_as::<_, Tenant>(
        "SELECT id, slug, name, created_at FROM tenants WHERE id = wasit_current_tenant()",
    )
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(runtime::Error::NotFound("tenant"))
}

/// Looks a tenant up by slug for an operator command, with a message that says how to fix it.
pub async fn require_by_slug(pool: &PgPool, slug: &TenantSlug) -> runtime::Result<TenantId> {
    if slug.as_str() == "global" {
        return Err(runtime::Error::Invalid(
            "`global` is the shared knowledge base, not a tenant: load its articles with `wasit kb ingest DIR --global`"
                .into(),
        ));
    }
    runtime::db::tenant_id_by_slug(pool, slug).await?.ok_or_else(|| {
        runtime::Error::Invalid(format!(
            "no tenant has the slug '{slug}'; create it with `wasit tenant create --slug {slug} --name NAME`"
        ))
    })
}
