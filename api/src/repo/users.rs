//! Users of one tenant.

use runtime::db::TenantTx;
use runtime::{Email, UserId};
use serde::Serialize;

use crate::auth::Role;

/// A user as the API shows it: never with the password hash.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub display_name: Option<String>,
    pub role: Role,
    pub disabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: UserId,
    email: String,
    display_name: Option<String>,
    role: String,
    disabled_at: Option<time::OffsetDateTime>,
    created_at: time::OffsetDateTime,
    password_hash: Option<String>,
}

impl TryFrom<UserRow> for User {
    type Error = runtime::Error;
    fn try_from(row: UserRow) -> Result<Self, Self::Error> {
        let role = Role::parse(&row.role).ok_or_else(|| {
            runtime::Error::Invalid(format!("unknown role {:?} in database", row.role))
        })?;
        Ok(User {
            id: row.id,
            email: row.email,
            display_name: row.display_name,
            role,
            disabled: row.disabled_at.is_some(),
            created_at: row.created_at,
        })
    }
}

const COLUMNS: &str = "id, email, display_name, role, disabled_at, created_at, password_hash";

/// Inserts a user; a duplicate email in the tenant is a conflict.
pub async fn create(
    tx: &mut TenantTx,
    email: &Email,
    display_name: Option<&str>,
    role: Role,
    password_hash: Option<&str>,
) -> runtime::Result<User> {
    let row = sqlx::query_as::<_, UserRow>(&format!(
        "INSERT INTO users (tenant_id, email, display_name, role, password_hash)
         VALUES (wasit_current_tenant(), $1, $2, $3, $4) RETURNING {COLUMNS}"
    ))
    .bind(email.as_str())
    .bind(display_name)
    .bind(role.as_str())
    .bind(password_hash)
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| match runtime::Error::from(e) {
        e if e.is_unique_violation() => {
            runtime::Error::Conflict(format!("a user with email {email} already exists"))
        }
        e => e,
    })?;
    row.try_into()
}

/// A user and their password hash, for login.
pub async fn find_for_login(
    tx: &mut TenantTx,
    email: &Email,
) -> runtime::Result<Option<(User, Option<String>)>> {
    let row = sqlx::query_as::<_, UserRow>(&format!(
        "SELECT {COLUMNS} FROM users WHERE tenant_id = wasit_current_tenant() AND email = $1"
    ))
    .bind(email.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    match row {
        None => Ok(None),
        Some(mut row) => {
            let hash = row.password_hash.take();
            Ok(Some((row.try_into()?, hash)))
        }
    }
}

pub async fn find(tx: &mut TenantTx, id: UserId) -> runtime::Result<User> {
    sqlx::query_as::<_, UserRow>(&format!(
        "SELECT {COLUMNS} FROM users WHERE tenant_id = wasit_current_tenant() AND id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(runtime::Error::NotFound("user"))?
    .try_into()
}

/// One page of users in id order, starting after `after`.
pub async fn list(
    tx: &mut TenantTx,
    after: Option<UserId>,
    limit: i64,
) -> runtime::Result<Vec<User>> {
    let rows = sqlx::query_as::<_, UserRow>(&format!(
        "SELECT {COLUMNS} FROM users
         WHERE tenant_id = wasit_current_tenant() AND ($1::uuid IS NULL OR id > $1)
         ORDER BY id LIMIT $2"
    ))
    .bind(after)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    rows.into_iter().map(User::try_from).collect()
}
