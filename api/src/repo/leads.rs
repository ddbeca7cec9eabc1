//! Leads of one tenant, and the rules of their status.

use runtime::db::TenantTx;
use runtime::{ContactId, LeadId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

pub use super::Cursor;
use super::foreign_key_is_invalid;

/// Where a lead is. Moves only forward: new → contacted → qualified → converted, or to
/// disqualified from any open state; converted and disqualified are final.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeadStatus {
    New,
    Contacted,
    Qualified,
    Converted,
    Disqualified,
}

impl LeadStatus {
    pub const ALL: &'static [LeadStatus] = &[
        LeadStatus::New,
        LeadStatus::Contacted,
        LeadStatus::Qualified,
        LeadStatus::Converted,
        LeadStatus::Disqualified,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LeadStatus::New => "new",
            LeadStatus::Contacted => "contacted",
            LeadStatus::Qualified => "qualified",
            LeadStatus::Converted => "converted",
            LeadStatus::Disqualified => "disqualified",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.as_str() == s)
    }

    /// The statuses a lead in this status may move to.
    pub fn next(self) -> &'static [LeadStatus] {
        use LeadStatus::*;
        match self {
            New => &[Contacted, Disqualified],
            Contacted => &[Qualified, Disqualified],
            Qualified => &[Converted, Disqualified],
            Converted | Disqualified => &[],
        }
    }
}

/// How a lead reached the tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeadSource {
    Whatsapp,
    Sms,
    Email,
    Web,
    Referral,
    Import,
    Manual,
}

impl LeadSource {
    pub const ALL: &'static [LeadSource] = &[
        LeadSource::Whatsapp,
        LeadSource::Sms,
        LeadSource::Email,
        LeadSource::Web,
        LeadSource::Referral,
        LeadSource::Import,
        LeadSource::Manual,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LeadSource::Whatsapp => "whatsapp",
            LeadSource::Sms => "sms",
            LeadSource::Email => "email",
            LeadSource::Web => "web",
            LeadSource::Referral => "referral",
            LeadSource::Import => "import",
            LeadSource::Manual => "manual",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.as_str() == s)
    }
}

/// One reason behind a score.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreReason {
    pub reason: String,
    pub points: i32,
}

#[derive(Clone, Debug, Serialize)]
pub struct Lead {
    pub id: LeadId,
    pub contact_id: Option<ContactId>,
    pub source: LeadSource,
    pub status: LeadStatus,
    pub score: Option<i16>,
    pub score_reasons: Vec<ScoreReason>,
    pub qualification: Value,
    pub sector: Option<String>,
    pub territory: Option<String>,
    pub owner_user_id: Option<UserId>,
    /// The affiliate who referred the lead.
    pub affiliate_id: Option<uuid::Uuid>,
    pub disqualified_reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(sqlx::FromRow)]
struct LeadRow {
    id: LeadId,
    contact_id: Option<ContactId>,
    source: String,
    status: String,
    score: Option<i16>,
    score_reasons: sqlx::types::Json<Vec<ScoreReason>>,
    qualification: Value,
    sector: Option<String>,
    territory: Option<String>,
    owner_user_id: Option<UserId>,
    affiliate_id: Option<uuid::Uuid>,
    disqualified_reason: Option<String>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl TryFrom<LeadRow> for Lead {
    type Error = runtime::Error;
    fn try_from(row: LeadRow) -> Result<Self, Self::Error> {
        let bad = |what: &str, v: &str| {
            runtime::Error::Invalid(format!("unknown lead {what} {v:?} in database"))
        };
        Ok(Lead {
            id: row.id,
            contact_id: row.contact_id,
            source: LeadSource::parse(&row.source).ok_or_else(|| bad("source", &row.source))?,
            status: LeadStatus::parse(&row.status).ok_or_else(|| bad("status", &row.status))?,
            score: row.score,
            score_reasons: row.score_reasons.0,
            qualification: row.qualification,
            sector: row.sector,
            territory: row.territory,
            owner_user_id: row.owner_user_id,
            affiliate_id: row.affiliate_id,
            disqualified_reason: row.disqualified_reason,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

const COLUMNS: &str = "id, contact_id, source, status, score, score_reasons, qualification, sector, \
                       territory, owner_user_id, affiliate_id, disqualified_reason, created_at, updated_at";

/// A new lead's fields.
#[derive(Debug, Default)]
pub struct NewLead {
    pub contact_id: Option<ContactId>,
    pub source: Option<LeadSource>,
    pub score: Option<i16>,
    pub score_reasons: Vec<ScoreReason>,
    pub qualification: Option<Value>,
    pub sector: Option<String>,
    pub territory: Option<String>,
    pub owner_user_id: Option<UserId>,
}

/// Inserts a lead (status `new`). A contact or owner that is not the tenant's is `Invalid`.
pub async fn create(tx: &mut TenantTx, new: &NewLead) -> runtime::Result<Lead> {
    let row = sqlx::query_as::<_, LeadRow>(&format!(
        "INSERT INTO leads (tenant_id, contact_id, source, score, score_reasons, qualification, sector,
                            territory, owner_user_id)
         VALUES (wasit_current_tenant(), $1, $2, $3, $4, coalesce($5, '{{}}'::jsonb), $6, $7, $8)
         RETURNING {COLUMNS}"
    ))
    .bind(new.contact_id)
    .bind(new.source.unwrap_or(LeadSource::Manual).as_str())
    .bind(new.score)
    .bind(sqlx::types::Json(&new.score_reasons))
    .bind(&new.qualification)
    .bind(&new.sector)
    .bind(&new.territory)
    .bind(new.owner_user_id)
    .fetch_one(&mut **tx)
    .await
    .map_err(foreign_key_is_invalid)?;
    row.try_into()
}

/// The lead, if it is the tenant's.
pub async fn find(tx: &mut TenantTx, id: LeadId) -> runtime::Result<Lead> {
    sqlx::query_as::<_, LeadRow>(&format!(
        "SELECT {COLUMNS} FROM leads WHERE tenant_id = wasit_current_tenant() AND id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(runtime::Error::NotFound("lead"))?
    .try_into()
}

/// The lead, locked for an update in this transaction.
pub async fn find_for_update(tx: &mut TenantTx, id: LeadId) -> runtime::Result<Lead> {
    sqlx::query_as::<_, LeadRow>(&format!(
        "SELECT {COLUMNS} FROM leads WHERE tenant_id = wasit_current_tenant() AND id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(runtime::Error::NotFound("lead"))?
    .try_into()
}

/// List filters; `None` matches everything.
#[derive(Debug, Default)]
pub struct Filter {
    pub status: Option<LeadStatus>,
    pub owner_user_id: Option<UserId>,
    pub source: Option<LeadSource>,
    pub contact_id: Option<ContactId>,
}

/// Up to `limit` leads after `after`, newest first.
pub async fn list(
    tx: &mut TenantTx,
    filter: &Filter,
    after: Option<Cursor>,
    limit: i64,
) -> runtime::Result<Vec<Lead>> {
    let rows = sqlx::query_as::<_, LeadRow>(&format!(
        "SELECT {COLUMNS} FROM leads
         WHERE tenant_id = wasit_current_tenant()
           AND ($1::text IS NULL OR status = $1)
           AND ($2::uuid IS NULL OR owner_user_id = $2)
           AND ($3::text IS NULL OR source = $3)
           AND ($4::uuid IS NULL OR contact_id = $4)
           AND ($5::timestamptz IS NULL OR (created_at, id) < ($5, $6))
         ORDER BY created_at DESC, id DESC
         LIMIT $7"
    ))
    .bind(filter.status.map(LeadStatus::as_str))
    .bind(filter.owner_user_id)
    .bind(filter.source.map(LeadSource::as_str))
    .bind(filter.contact_id)
    .bind(after.map(|c| c.created_at))
    .bind(after.map(|c| c.id))
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    rows.into_iter().map(TryInto::try_into).collect()
}

/// Writes every field of `lead` back (the caller has checked the change).
pub async fn save(tx: &mut TenantTx, lead: &Lead) -> runtime::Result<Lead> {
    let row = sqlx::query_as::<_, LeadRow>(&format!(
        "UPDATE leads SET contact_id = $2, status = $3, score = $4, score_reasons = $5,
                          qualification = $6, sector = $7, territory = $8, owner_user_id = $9,
                          disqualified_reason = $10, updated_at = now()
         WHERE tenant_id = wasit_current_tenant() AND id = $1
         RETURNING {COLUMNS}"
    ))
    .bind(lead.id)
    .bind(lead.contact_id)
    .bind(lead.status.as_str())
    .bind(lead.score)
    .bind(sqlx::types::Json(&lead.score_reasons))
    .bind(&lead.qualification)
    .bind(&lead.sector)
    .bind(&lead.territory)
    .bind(lead.owner_user_id)
    .bind(&lead.disqualified_reason)
    .fetch_optional(&mut **tx)
    .await
    .map_err(foreign_key_is_invalid)?
    .ok_or(runtime::Error::NotFound("lead"))?;
    row.try_into()
}

/// Assigns the lead to a rep: among enabled sales reps who take leads and whose sectors and
/// territories (empty: any) include the lead's, the one with the fewest open leads (ties: the
/// oldest account). `None` when no rep matches. The reps' rows are locked in a fixed order, so
/// concurrent assignments see each other's load.
pub async fn assign(tx: &mut TenantTx, id: LeadId) -> runtime::Result<Option<Lead>> {
    let lead = find_for_update(tx, id).await?;
    let rep: Option<UserId> = sqlx::query_scalar(
        "WITH candidates AS (
             SELECT u.id, u.created_at FROM users u
             LEFT JOIN rep_profiles p ON p.tenant_id = u.tenant_id AND p.user_id = u.id
             WHERE u.tenant_id = wasit_current_tenant() AND u.role = 'sales_rep' AND u.disabled_at IS NULL
               AND coalesce(p.accepts_leads, true)
               AND ($1::text IS NULL OR coalesce(cardinality(p.sectors), 0) = 0 OR $1 = ANY(p.sectors))
               AND ($2::text IS NULL OR coalesce(cardinality(p.territories), 0) = 0 OR $2 = ANY(p.territories))
             ORDER BY u.id
             FOR UPDATE OF u)
         SELECT c.id FROM candidates c
         ORDER BY (SELECT count(*) FROM leads l
                   WHERE l.tenant_id = wasit_current_tenant() AND l.owner_user_id = c.id
                     AND l.status IN ('new', 'contacted', 'qualified')),
                  c.created_at, c.id
         LIMIT 1",
    )
    .bind(&lead.sector)
    .bind(&lead.territory)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(rep) = rep else {
        return Ok(None);
    };
    let mut assigned = lead;
    assigned.owner_user_id = Some(rep);
    save(tx, &assigned).await.map(Some)
}

/// The active affiliate with this referral code, if any.
pub async fn affiliate_by_code(
    tx: &mut TenantTx,
    code: &str,
) -> runtime::Result<Option<uuid::Uuid>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM affiliates WHERE tenant_id = wasit_current_tenant() AND referral_code = $1 AND status = 'active'",
    )
    .bind(code.trim().to_uppercase())
    .fetch_optional(&mut **tx)
    .await?)
}

/// Records which affiliate brought the lead.
pub async fn set_affiliate(
    tx: &mut TenantTx,
    id: LeadId,
    affiliate: uuid::Uuid,
) -> runtime::Result<()> {
    sqlx::query(
        "UPDATE leads SET affiliate_id = $2 WHERE tenant_id = wasit_current_tenant() AND id = $1",
    )
    .bind(id)
    .bind(affiliate)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
