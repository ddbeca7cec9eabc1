//! Proposals on deals, and the rules of their status.

use runtime::UserId;
use runtime::db::TenantTx;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{Cursor, foreign_key_is_invalid};

/// draft → sent → accepted | declined. Only a draft's content changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProposalStatus {
    Draft,
    Sent,
    Accepted,
    Declined,
}

impl ProposalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProposalStatus::Draft => "draft",
            ProposalStatus::Sent => "sent",
            ProposalStatus::Accepted => "accepted",
            ProposalStatus::Declined => "declined",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Draft, Self::Sent, Self::Accepted, Self::Declined]
            .into_iter()
            .find(|v| v.as_str() == s)
    }

    pub fn next(self) -> &'static [ProposalStatus] {
        match self {
            ProposalStatus::Draft => &[ProposalStatus::Sent],
            ProposalStatus::Sent => &[ProposalStatus::Accepted, ProposalStatus::Declined],
            ProposalStatus::Accepted | ProposalStatus::Declined => &[],
        }
    }
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Proposal {
    pub id: uuid::Uuid,
    pub deal_id: uuid::Uuid,
    pub title: String,
    pub content: String,
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    pub status: String,
    pub author_user_id: Option<UserId>,
    pub author_agent: Option<String>,
    /// The discount in basis points (500 = 5 %).
    pub discount_bps: Option<i32>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub sent_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub decided_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

const COLUMNS: &str = "id, deal_id, title, content, amount_minor, currency, status, author_user_id, \
                       author_agent, discount_bps, sent_at, decided_at, created_at, updated_at";

pub async fn find(tx: &mut TenantTx, id: uuid::Uuid, lock: bool) -> runtime::Result<Proposal> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    sqlx::query_as::<_, Proposal>(&format!(
        "SELECT {COLUMNS} FROM proposals WHERE tenant_id = wasit_current_tenant() AND id = $1{lock}"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(runtime::Error::NotFound("proposal"))
}

#[derive(Debug)]
pub struct NewProposal {
    pub deal_id: uuid::Uuid,
    pub title: String,
    pub content: String,
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    pub author_user_id: Option<UserId>,
    /// The agent that wrote it, when an agent did.
    pub author_agent: Option<String>,
    pub discount_bps: Option<i32>,
}

pub async fn create(tx: &mut TenantTx, p: &NewProposal) -> runtime::Result<Proposal> {
    sqlx::query_as::<_, Proposal>(&format!(
        "INSERT INTO proposals (tenant_id, deal_id, title, content, amount_minor, currency, author_user_id,
                                author_agent, discount_bps)
         VALUES (wasit_current_tenant(), $1, $2, $3, $4, $5, $6, $7, $8)
         RETURNING {COLUMNS}"
    ))
    .bind(p.deal_id)
    .bind(&p.title)
    .bind(&p.content)
    .bind(p.amount_minor)
    .bind(&p.currency)
    .bind(p.author_user_id)
    .bind(&p.author_agent)
    .bind(p.discount_bps)
    .fetch_one(&mut **tx)
    .await
    .map_err(foreign_key_is_invalid)
}

/// Writes back content and status; stamps `sent_at` / `decided_at` when the status gets there.
pub async fn save(tx: &mut TenantTx, p: &Proposal) -> runtime::Result<Proposal> {
    Ok(sqlx::query_as::<_, Proposal>(&format!(
        "UPDATE proposals SET title = $2, content = $3, amount_minor = $4, currency = $5, status = $6,
             sent_at = CASE WHEN $6 = 'sent' AND sent_at IS NULL THEN now() ELSE sent_at END,
             decided_at = CASE WHEN $6 IN ('accepted', 'declined') AND decided_at IS NULL THEN now() ELSE decided_at END,
             updated_at = now()
         WHERE tenant_id = wasit_current_tenant() AND id = $1
         RETURNING {COLUMNS}"
    ))
    .bind(p.id)
    .bind(&p.title)
    .bind(&p.content)
    .bind(p.amount_minor)
    .bind(&p.currency)
    .bind(&p.status)
    .fetch_one(&mut **tx)
    .await?)
}

pub async fn list(
    tx: &mut TenantTx,
    deal: Option<uuid::Uuid>,
    status: Option<ProposalStatus>,
    after: Option<Cursor>,
    limit: i64,
) -> runtime::Result<Vec<Proposal>> {
    Ok(sqlx::query_as::<_, Proposal>(&format!(
        "SELECT {COLUMNS} FROM proposals
         WHERE tenant_id = wasit_current_tenant()
           AND ($1::uuid IS NULL OR deal_id = $1)
           AND ($2::text IS NULL OR status = $2)
           AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
         ORDER BY created_at DESC, id DESC
         LIMIT $5"
    ))
    .bind(deal)
    .bind(status.map(ProposalStatus::as_str))
    .bind(after.map(|c| c.created_at))
    .bind(after.map(|c| c.id))
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}
