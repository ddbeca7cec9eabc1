//! Approvals: money-moving actions agents asked for, waiting for a person (`approvals`).

use runtime::UserId;
use runtime::db::TenantTx;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Approval {
    pub id: uuid::Uuid,
    pub kind: String,
    pub status: String,
    pub conversation_id: Option<uuid::Uuid>,
    pub agent: String,
    pub tool: String,
    pub arguments: Value,
    pub summary: String,
    pub subject_type: String,
    pub subject_id: uuid::Uuid,
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
    pub decided_by_user_id: Option<UserId>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub decided_at: Option<OffsetDateTime>,
    pub decision_note: Option<String>,
}

const COLUMNS: &str = "id, kind, status, conversation_id, agent, tool, arguments, summary, subject_type, \
                       subject_id, amount_minor, currency, requested_at, decided_by_user_id, decided_at, decision_note";

pub async fn find(tx: &mut TenantTx, id: uuid::Uuid, lock: bool) -> runtime::Result<Approval> {
    sqlx::query_as::<_, Approval>(&format!(
        "SELECT {COLUMNS} FROM approvals WHERE tenant_id = wasit_current_tenant() AND id = $1 {}",
        if lock { "FOR UPDATE" } else { "" }
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(runtime::Error::NotFound("approval"))
}

/// Newest first; the cursor is (requested_at, id).
pub async fn list(
    tx: &mut TenantTx,
    status: Option<&str>,
    after: Option<super::Cursor>,
    limit: i64,
) -> runtime::Result<Vec<Approval>> {
    Ok(sqlx::query_as::<_, Approval>(&format!(
        "SELECT {COLUMNS} FROM approvals
         WHERE tenant_id = wasit_current_tenant() AND ($1::text IS NULL OR status = $1)
           AND ($2::timestamptz IS NULL OR (requested_at, id) < ($2, $3))
         ORDER BY requested_at DESC, id DESC LIMIT $4"
    ))
    .bind(status)
    .bind(after.map(|c| c.created_at))
    .bind(after.map(|c| c.id))
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}

/// Records the decision on a pending approval.
pub async fn decide(
    tx: &mut TenantTx,
    id: uuid::Uuid,
    approved: bool,
    by: UserId,
    note: Option<&str>,
) -> runtime::Result<Approval> {
    Ok(sqlx::query_as::<_, Approval>(&format!(
        "UPDATE approvals SET status = CASE WHEN $2 THEN 'approved' ELSE 'rejected' END,
             decided_by_user_id = $3, decided_at = now(), decision_note = $4
         WHERE tenant_id = wasit_current_tenant() AND id = $1 AND status = 'pending'
         RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(approved)
    .bind(by)
    .bind(note)
    .fetch_one(&mut **tx)
    .await?)
}
