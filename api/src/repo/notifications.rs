//! A user's in-app notifications, and the tenant's audit log (read side).

use runtime::UserId;
use runtime::db::TenantTx;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use super::Cursor;

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Notification {
    pub id: uuid::Uuid,
    pub kind: String,
    pub title: String,
    pub body: Option<String>,
    pub data: Value,
    #[serde(with = "time::serde::rfc3339::option")]
    pub read_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

const COLUMNS: &str = "id, kind, title, body, data, read_at, created_at";

/// `user`'s notifications, newest first.
pub async fn list(
    tx: &mut TenantTx,
    user: UserId,
    unread_only: bool,
    after: Option<Cursor>,
    limit: i64,
) -> runtime::Result<Vec<Notification>> {
    Ok(sqlx::query_as::<_, Notification>(&format!(
        "SELECT {COLUMNS} FROM notifications
         WHERE tenant_id = wasit_current_tenant() AND user_id = $1
           AND (NOT $2 OR read_at IS NULL)
           AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
         ORDER BY created_at DESC, id DESC LIMIT $5"
    ))
    .bind(user)
    .bind(unread_only)
    .bind(after.map(|c| c.created_at))
    .bind(after.map(|c| c.id))
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}

/// Marks `user`'s notification read (or unread); another user's is not found.
pub async fn mark(
    tx: &mut TenantTx,
    user: UserId,
    id: uuid::Uuid,
    read: bool,
) -> runtime::Result<Notification> {
    sqlx::query_as::<_, Notification>(&format!(
        "UPDATE notifications SET read_at = CASE WHEN $3 THEN coalesce(read_at, now()) END
         WHERE tenant_id = wasit_current_tenant() AND user_id = $1 AND id = $2
         RETURNING {COLUMNS}"
    ))
    .bind(user)
    .bind(id)
    .bind(read)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(runtime::Error::NotFound("notification"))
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: uuid::Uuid,
    pub actor_user_id: Option<UserId>,
    pub actor_role: String,
    pub action: String,
    pub entity: String,
    pub entity_id: Option<uuid::Uuid>,
    pub before: Option<Value>,
    pub after: Option<Value>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Default)]
pub struct AuditFilter {
    pub entity: Option<String>,
    pub entity_id: Option<uuid::Uuid>,
    pub actor_user_id: Option<UserId>,
}

/// The audit log, newest first.
pub async fn audit_log(
    tx: &mut TenantTx,
    f: &AuditFilter,
    after: Option<Cursor>,
    limit: i64,
) -> runtime::Result<Vec<AuditEntry>> {
    Ok(sqlx::query_as::<_, AuditEntry>(
        "SELECT id, actor_user_id, actor_role, action, entity, entity_id, before, after, at
         FROM audit_log
         WHERE tenant_id = wasit_current_tenant()
           AND ($1::text IS NULL OR entity = $1)
           AND ($2::uuid IS NULL OR entity_id = $2)
           AND ($3::uuid IS NULL OR actor_user_id = $3)
           AND ($4::timestamptz IS NULL OR (at, id) < ($4, $5))
         ORDER BY at DESC, id DESC LIMIT $6",
    )
    .bind(&f.entity)
    .bind(f.entity_id)
    .bind(f.actor_user_id)
    .bind(after.map(|c| c.created_at))
    .bind(after.map(|c| c.id))
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}
