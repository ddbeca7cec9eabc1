//! Gold-guarantee claims, their evidence, review and refund.

use runtime::db::TenantTx;
use runtime::{ContactId, UserId};
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use super::foreign_key_is_invalid;

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Claim {
    pub id: uuid::Uuid,
    pub contact_id: Option<ContactId>,
    pub deal_id: Option<uuid::Uuid>,
    pub description: String,
    pub claimed_minor: i64,
    pub currency: String,
    pub status: String,
    pub evidence: Value,
    pub decision_note: Option<String>,
    pub approved_minor: Option<i64>,
    pub approved_by_user_id: Option<UserId>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub approved_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

const COLUMNS: &str = "id, contact_id, deal_id, description, claimed_minor, currency, status, evidence, \
                       decision_note, approved_minor, approved_by_user_id, approved_at, created_at, updated_at";

pub async fn find(tx: &mut TenantTx, id: uuid::Uuid, lock: bool) -> runtime::Result<Claim> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    sqlx::query_as::<_, Claim>(&format!(
        "SELECT {COLUMNS} FROM guarantee_claims WHERE tenant_id = wasit_current_tenant() AND id = $1{lock}"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(runtime::Error::NotFound("guarantee claim"))
}

pub async fn create(
    tx: &mut TenantTx,
    contact_id: Option<ContactId>,
    deal_id: Option<uuid::Uuid>,
    description: &str,
    claimed_minor: i64,
    currency: &str,
) -> runtime::Result<Claim> {
    sqlx::query_as::<_, Claim>(&format!(
        "INSERT INTO guarantee_claims (tenant_id, contact_id, deal_id, description, claimed_minor, currency)
         VALUES (wasit_current_tenant(), $1, $2, $3, $4, $5) RETURNING {COLUMNS}"
    ))
    .bind(contact_id)
    .bind(deal_id)
    .bind(description)
    .bind(claimed_minor)
    .bind(currency)
    .fetch_one(&mut **tx)
    .await
    .map_err(foreign_key_is_invalid)
}

pub async fn save(tx: &mut TenantTx, c: &Claim) -> runtime::Result<Claim> {
    Ok(sqlx::query_as::<_, Claim>(&format!(
        "UPDATE guarantee_claims SET status = $2, evidence = $3, decision_note = $4, approved_minor = $5,
                approved_by_user_id = $6, approved_at = $7, updated_at = now()
         WHERE tenant_id = wasit_current_tenant() AND id = $1 RETURNING {COLUMNS}"
    ))
    .bind(c.id)
    .bind(&c.status)
    .bind(&c.evidence)
    .bind(&c.decision_note)
    .bind(c.approved_minor)
    .bind(c.approved_by_user_id)
    .bind(c.approved_at)
    .fetch_one(&mut **tx)
    .await?)
}

pub async fn list(
    tx: &mut TenantTx,
    status: Option<&str>,
    after: Option<super::Cursor>,
    limit: i64,
) -> runtime::Result<Vec<Claim>> {
    Ok(sqlx::query_as::<_, Claim>(&format!(
        "SELECT {COLUMNS} FROM guarantee_claims
         WHERE tenant_id = wasit_current_tenant() AND ($1::text IS NULL OR status = $1)
           AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
         ORDER BY created_at DESC, id DESC LIMIT $4"
    ))
    .bind(status)
    .bind(after.map(|c| c.created_at))
    .bind(after.map(|c| c.id))
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Refund {
    pub id: uuid::Uuid,
    pub claim_id: uuid::Uuid,
    pub amount_minor: i64,
    pub currency: String,
    pub approved_by_user_id: UserId,
    pub refunded_by_user_id: UserId,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Records the refund of an approved claim (the caller checked the amount) and marks it refunded.
pub async fn refund(
    tx: &mut TenantTx,
    claim: &Claim,
    amount_minor: i64,
    refunded_by: UserId,
) -> runtime::Result<Refund> {
    let approved_by = claim
        .approved_by_user_id
        .ok_or_else(|| runtime::Error::Conflict("the claim has no recorded approval".into()))?;
    let refund = sqlx::query_as::<_, Refund>(
        "INSERT INTO guarantee_refunds (tenant_id, claim_id, amount_minor, currency, approved_by_user_id, refunded_by_user_id)
         VALUES (wasit_current_tenant(), $1, $2, $3, $4, $5)
         RETURNING id, claim_id, amount_minor, currency, approved_by_user_id, refunded_by_user_id, created_at",
    )
    .bind(claim.id)
    .bind(amount_minor)
    .bind(&claim.currency)
    .bind(approved_by)
    .bind(refunded_by)
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| match runtime::Error::from(e) {
        e if e.is_unique_violation() => runtime::Error::Conflict("the claim was refunded already".into()),
        e => e,
    })?;
    sqlx::query("UPDATE guarantee_claims SET status = 'refunded', updated_at = now() WHERE tenant_id = wasit_current_tenant() AND id = $1")
        .bind(claim.id)
        .execute(&mut **tx)
        .await?;
    Ok(refund)
}
