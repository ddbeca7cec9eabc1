//! Contacts of one tenant: who they are, how to reach them (identities), and their consent per
//! channel.

use std::collections::BTreeMap;

use runtime::ContactId;
use runtime::db::TenantTx;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::Cursor;

/// A way of reaching a contact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityKind {
    Phone,
    WhatsappBsuid,
    Email,
    /// The name a `wasit chat` user talks under.
    Chat,
}

impl IdentityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Phone => "phone",
            IdentityKind::WhatsappBsuid => "whatsapp_bsuid",
            IdentityKind::Email => "email",
            IdentityKind::Chat => "chat",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub kind: IdentityKind,
    pub value: String,
}

/// A channel a contact can be messaged on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentChannel {
    Whatsapp,
    Sms,
    Email,
}

impl ConsentChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentChannel::Whatsapp => "whatsapp",
            ConsentChannel::Sms => "sms",
            ConsentChannel::Email => "email",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentStatus {
    Granted,
    OptedOut,
}

impl ConsentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentStatus::Granted => "granted",
            ConsentStatus::OptedOut => "opted_out",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Consent {
    pub status: ConsentStatus,
    pub source: String,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(Clone, Debug, Serialize)]
pub struct Contact {
    pub id: ContactId,
    pub display_name: Option<String>,
    pub locale: Option<String>,
    pub identities: Vec<Identity>,
    /// Recorded consent per channel; a channel without an entry has none recorded.
    pub consent: BTreeMap<ConsentChannel, Consent>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(sqlx::FromRow)]
struct ContactRow {
    id: ContactId,
    display_name: Option<String>,
    locale: Option<String>,
    identities: sqlx::types::Json<Vec<Identity>>,
    consent: sqlx::types::Json<BTreeMap<ConsentChannel, Consent>>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl From<ContactRow> for Contact {
    fn from(r: ContactRow) -> Self {
        Contact {
            id: r.id,
            display_name: r.display_name,
            locale: r.locale,
            identities: r.identities.0,
            consent: r.consent.0,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// The columns of a contact, with its identities and consent aggregated (alias `c`).
const SELECT: &str = "SELECT c.id, c.display_name, c.locale,
        (SELECT coalesce(jsonb_agg(jsonb_build_object('kind', i.kind, 'value', i.value) ORDER BY i.kind, i.value), '[]')
           FROM contact_identities i WHERE i.tenant_id = c.tenant_id AND i.contact_id = c.id) AS identities,
        (SELECT coalesce(jsonb_object_agg(k.channel, jsonb_build_object('status', k.status, 'source', k.source,
                                          'updated_at', to_char(k.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))), '{}')
           FROM contact_consents k WHERE k.tenant_id = c.tenant_id AND k.contact_id = c.id) AS consent,
        c.created_at, c.updated_at
    FROM contacts c";

pub async fn find(tx: &mut TenantTx, id: ContactId) -> runtime::Result<Contact> {
    sqlx::query_as::<_, ContactRow>(&format!(
        "{SELECT} WHERE c.tenant_id = wasit_current_tenant() AND c.id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .map(Contact::from)
    .ok_or(runtime::Error::NotFound("contact"))
}

/// Creates a contact with its identities; an identity another contact of the tenant already has
/// is a conflict (the contact exists: find it with `?identity=`).
pub async fn create(
    tx: &mut TenantTx,
    display_name: Option<&str>,
    locale: Option<&str>,
    identities: &[Identity],
) -> runtime::Result<Contact> {
    let id: ContactId = sqlx::query_scalar(
        "INSERT INTO contacts (tenant_id, display_name, locale) VALUES (wasit_current_tenant(), $1, $2) RETURNING id",
    )
    .bind(display_name)
    .bind(locale)
    .fetch_one(&mut **tx)
    .await?;
    add_identities(tx, id, identities).await?;
    find(tx, id).await
}

async fn add_identities(
    tx: &mut TenantTx,
    id: ContactId,
    identities: &[Identity],
) -> runtime::Result<()> {
    for identity in identities {
        let inserted = sqlx::query(
            "INSERT INTO contact_identities (tenant_id, contact_id, kind, value)
             VALUES (wasit_current_tenant(), $1, $2, $3)
             ON CONFLICT (tenant_id, kind, value) DO NOTHING",
        )
        .bind(id)
        .bind(identity.kind.as_str())
        .bind(&identity.value)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(runtime::Error::Conflict(format!(
                "another contact already has the {} {}",
                identity.kind.as_str(),
                identity.value
            )));
        }
    }
    Ok(())
}

/// List filters; `None` matches everything.
#[derive(Debug, Default)]
pub struct Filter {
    /// Part of the display name, case-insensitive.
    pub name: Option<String>,
    /// An exact identity value (a normalised phone, an email, a BSUID).
    pub identity: Option<String>,
}

pub async fn list(
    tx: &mut TenantTx,
    filter: &Filter,
    after: Option<Cursor>,
    limit: i64,
) -> runtime::Result<Vec<Contact>> {
    let rows = sqlx::query_as::<_, ContactRow>(&format!(
        "{SELECT}
         WHERE c.tenant_id = wasit_current_tenant()
           AND ($1::text IS NULL OR c.display_name ILIKE '%' || $1 || '%')
           AND ($2::text IS NULL OR EXISTS (SELECT 1 FROM contact_identities i
                 WHERE i.tenant_id = c.tenant_id AND i.contact_id = c.id AND i.value = $2))
           AND ($3::timestamptz IS NULL OR (c.created_at, c.id) < ($3, $4))
         ORDER BY c.created_at DESC, c.id DESC
         LIMIT $5"
    ))
    .bind(filter.name.as_deref().map(escape_like))
    .bind(&filter.identity)
    .bind(after.map(|c| c.created_at))
    .bind(after.map(|c| c.id))
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.into_iter().map(Contact::from).collect())
}

/// `%`, `_` and `\` in a search term match themselves.
fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// A change to a contact; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct Change {
    pub display_name: Option<Option<String>>,
    pub locale: Option<Option<String>>,
    pub add_identities: Vec<Identity>,
    pub consent: Vec<(ConsentChannel, ConsentStatus)>,
}

pub async fn update(tx: &mut TenantTx, id: ContactId, change: &Change) -> runtime::Result<Contact> {
    let found = sqlx::query(
        "UPDATE contacts SET
             display_name = CASE WHEN $2 THEN $3 ELSE display_name END,
             locale = CASE WHEN $4 THEN $5 ELSE locale END,
             updated_at = now()
         WHERE tenant_id = wasit_current_tenant() AND id = $1",
    )
    .bind(id)
    .bind(change.display_name.is_some())
    .bind(change.display_name.clone().flatten())
    .bind(change.locale.is_some())
    .bind(change.locale.clone().flatten())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if found == 0 {
        return Err(runtime::Error::NotFound("contact"));
    }
    add_identities(tx, id, &change.add_identities).await?;
    for (channel, status) in &change.consent {
        sqlx::query(
            "INSERT INTO contact_consents (tenant_id, contact_id, channel, status, source)
             VALUES (wasit_current_tenant(), $1, $2, $3, 'api')
             ON CONFLICT (tenant_id, contact_id, channel)
             DO UPDATE SET status = EXCLUDED.status, source = EXCLUDED.source, updated_at = now()",
        )
        .bind(id)
        .bind(channel.as_str())
        .bind(status.as_str())
        .execute(&mut **tx)
        .await?;
    }
    find(tx, id).await
}

/// Whether `contact` may be messaged proactively on `channel`: not when it opted out.
pub async fn may_message_proactively(
    tx: &mut TenantTx,
    contact: ContactId,
    channel: ConsentChannel,
) -> runtime::Result<bool> {
    let opted_out: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM contact_consents
                        WHERE tenant_id = wasit_current_tenant() AND contact_id = $1
                          AND channel = $2 AND status = 'opted_out')",
    )
    .bind(contact)
    .bind(channel.as_str())
    .fetch_one(&mut **tx)
    .await?;
    Ok(!opted_out)
}
