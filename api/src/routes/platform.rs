//! The platform view for superadmins: `GET /platform/tenants`, every tenant with its counts. It
//! runs as `wasit_platform` — the one application role that reads across tenants — and records
//! every call in `platform_audit` in the same transaction.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;

use crate::app::AppState;
use crate::auth::{AuthUser, Role};
use crate::error::ApiError;

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct TenantCounts {
    pub id: uuid::Uuid,
    pub slug: String,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub users: i64,
    pub contacts: i64,
    pub conversations: i64,
    pub messages: i64,
    pub leads: i64,
    pub deals: i64,
}

#[derive(Debug, Serialize)]
pub struct Platform {
    pub items: Vec<TenantCounts>,
    pub tenants: usize,
    pub messages: i64,
}

pub async fn tenants(
    State(state): State<AppState>,
    auth: AuthUser,
) -> Result<Json<Platform>, ApiError> {
    auth.require(&[Role::Superadmin])?;
    let pool = state
        .platform
        .as_ref()
        .ok_or_else(|| ApiError::Unavailable("the platform view is not configured".into()))?;
    // The caller is re-checked in their own tenant first, as on every route.
    auth.begin(&state.db).await?.commit().await?;
    let mut tx = runtime::db::begin_platform(pool).await?;
    sqlx::query(
        "INSERT INTO platform_audit (actor_subject, actor_tenant, action, details) VALUES ($1, $2, 'list_tenants', $3)",
    )
    .bind(&auth.subject)
    .bind(auth.tenant.0)
    .bind(json!({"role": auth.role.as_str()}))
    .execute(&mut *tx)
    .await?;
    let items: Vec<TenantCounts> = sqlx::query_as(
        "SELECT t.id, t.slug, t.name, t.created_at,
                (SELECT count(*) FROM users u WHERE u.tenant_id = t.id) AS users,
                (SELECT count(*) FROM contacts c WHERE c.tenant_id = t.id) AS contacts,
                (SELECT count(*) FROM conversations v WHERE v.tenant_id = t.id) AS conversations,
                (SELECT count(*) FROM messages m WHERE m.tenant_id = t.id) AS messages,
                (SELECT count(*) FROM leads l WHERE l.tenant_id = t.id) AS leads,
                (SELECT count(*) FROM deals d WHERE d.tenant_id = t.id) AS deals
         FROM tenants t
         -- The global knowledge base's pseudo-tenant is not a business.
         WHERE t.id <> wasit_global_tenant()
         ORDER BY t.created_at, t.id",
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let messages = items.iter().map(|t| t.messages).sum();
    Ok(Json(Platform {
        tenants: items.len(),
        messages,
        items,
    }))
}
