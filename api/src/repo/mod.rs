//! Repositories: the only modules with SQL for the API's tables. Every function takes a tenant
//! transaction (from `runtime::db::begin_tenant`) or, for operator commands, the admin pool.

pub mod approvals;
pub mod articles;
pub mod audit;
pub mod channels;
pub mod commissions;
pub mod contacts;
pub mod conversations;
pub mod deals;
pub mod guarantees;
pub mod leads;
pub mod meetings;
pub mod notifications;
pub mod proposals;
pub mod tenants;
pub mod users;

/// Where a page of a newest-first list ends: the last row's (created_at, id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: time::OffsetDateTime,
    pub id: uuid::Uuid,
}

impl Cursor {
    pub fn new(created_at: time::OffsetDateTime, id: uuid::Uuid) -> Self {
        Self { created_at, id }
    }

    /// `<unix microseconds>.<uuid>`: opaque to clients.
    pub fn encode(&self) -> String {
        format!(
            "{}.{}",
            self.created_at.unix_timestamp_nanos() / 1_000,
            self.id
        )
    }

    pub fn decode(s: &str) -> Option<Self> {
        let (micros, id) = s.split_once('.')?;
        let micros: i128 = micros.parse().ok()?;
        Some(Self {
            created_at: time::OffsetDateTime::from_unix_timestamp_nanos(micros.checked_mul(1_000)?)
                .ok()?,
            id: id.parse().ok()?,
        })
    }
}

/// A foreign key that does not hold means the body named a record the tenant does not have
/// (perhaps another tenant's): answered like one that does not exist, naming the field.
pub(crate) fn foreign_key_is_invalid(e: sqlx::Error) -> runtime::Error {
    match &e {
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
            let constraint = d.constraint().unwrap_or_default();
            let what = [
                (
                    "owner_user_id",
                    "owner_user_id is not a user of this tenant",
                ),
                ("contact_id", "contact_id is not a contact of this tenant"),
                ("lead_id", "lead_id is not a lead of this tenant"),
                ("stage_id", "stage_id is not a stage of this tenant"),
                (
                    "affiliate",
                    "affiliate_id is not an affiliate of this tenant",
                ),
            ]
            .into_iter()
            .find(|(column, _)| constraint.contains(column))
            .map_or(
                "a referenced record does not exist in this tenant",
                |(_, m)| m,
            );
            runtime::Error::Invalid(what.into())
        }
        _ => e.into(),
    }
}
