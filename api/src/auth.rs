//! Authentication and authorisation: JWTs (HS256, pinned), roles, password hashes.
//!
//! A token carries the tenant (`tid`), the role and the subject. It is the only place a request's
//! tenant comes from: handlers take [`AuthUser`] and never read a tenant from the body or the path.

use std::fmt;
use std::sync::Arc;

use argon2::Argon2;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use runtime::{TenantId, UserId};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Who signs tokens, and for whom.
pub const ISSUER: &str = "wasit";
pub const AUDIENCE: &str = "wasit-api";

/// What a user may do. The set is closed: an unknown role in a token or a body is rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Role {
    /// Operates the platform across tenants.
    Superadmin,
    /// Runs one tenant: users, channels, settings.
    Admin,
    /// Leads the reps: pipeline, assignments, forecasts.
    SalesManager,
    /// Works leads and takes over escalated conversations.
    SalesRep,
    /// Edits prompt files and watches agent behaviour.
    PromptEngineer,
    /// Refers leads and earns commissions.
    Affiliate,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Superadmin => "superadmin",
            Role::Admin => "admin",
            Role::SalesManager => "sales_manager",
            Role::SalesRep => "sales_rep",
            Role::PromptEngineer => "prompt_engineer",
            Role::Affiliate => "affiliate",
        }
    }

    /// The inverse of [`Role::as_str`].
    pub fn parse(s: &str) -> Option<Role> {
        Self::ALL.iter().copied().find(|r| r.as_str() == s)
    }

    pub const ALL: &'static [Role] = &[
        Role::Superadmin,
        Role::Admin,
        Role::SalesManager,
        Role::SalesRep,
        Role::PromptEngineer,
        Role::Affiliate,
    ];

    /// Roles that administer a tenant.
    pub const ADMINS: &'static [Role] = &[Role::Superadmin, Role::Admin];

    /// Roles that work the CRM: leads, contacts, deals, meetings.
    pub const SALES: &'static [Role] = &[
        Role::Superadmin,
        Role::Admin,
        Role::SalesManager,
        Role::SalesRep,
    ];
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The claims of a Wasit token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id, or `cli:<name>` for a token minted without a user.
    pub sub: String,
    /// The tenant. Required: a token without it is rejected.
    pub tid: TenantId,
    pub role: Role,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
}

/// Signs and verifies tokens with one HS256 key.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: Arc<EncodingKey>,
    decoding: Arc<DecodingKey>,
    validation: Arc<Validation>,
}

impl fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtKeys([REDACTED])")
    }
}

impl JwtKeys {
    pub fn new(secret: &SecretString) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        // The algorithm is pinned: a token that names another (or `none`) is rejected.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = 30;
        Self {
            encoding: Arc::new(EncodingKey::from_secret(bytes)),
            decoding: Arc::new(DecodingKey::from_secret(bytes)),
            validation: Arc::new(validation),
        }
    }

    /// The key from `WASIT_JWT_SECRET`, or the one generated once into the data directory.
    pub fn from_settings(settings: &runtime::Settings) -> runtime::Result<Self> {
        let secret = match &settings.jwt_secret {
            Some(s) => s.clone(),
            None => runtime::secrets::load_or_create(&settings.data_dir.join("jwt_secret"))?,
        };
        Ok(Self::new(&secret))
    }

    /// Mints a token valid for `ttl`.
    pub fn issue(
        &self,
        tenant: TenantId,
        role: Role,
        subject: &str,
        ttl: time::Duration,
    ) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = Claims {
            sub: subject.to_owned(),
            tid: tenant,
            role,
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            iat: now,
            exp: now + ttl.whole_seconds(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing with an in-memory key cannot fail")
    }

    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| {
                tracing::debug!(error = %e, "token rejected");
                ApiError::Unauthenticated("the bearer token is invalid or expired".into())
            })
    }
}

/// The authenticated caller of an `/api/v1` route.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub tenant: TenantId,
    pub role: Role,
    /// Set when the token's subject is a user id.
    pub user: Option<UserId>,
    pub subject: String,
}

impl AuthUser {
    /// 403 unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }

    /// Opens the caller's tenant transaction, after checking inside it that the token still
    /// stands: the tenant exists and, for a user's token, the user exists, is not disabled and
    /// still has the token's role. A demoted or disabled user's old token stops working at once.
    /// Every handler reaches tenant data through this.
    pub async fn begin(&self, pool: &sqlx::PgPool) -> Result<runtime::db::TenantTx, ApiError> {
        let mut tx = runtime::db::begin_tenant(pool, self.tenant).await?;
        let stands: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM tenants WHERE id = wasit_current_tenant())
                AND ($1::uuid IS NULL OR EXISTS (
                    SELECT 1 FROM users
                    WHERE tenant_id = wasit_current_tenant() AND id = $1
                      AND disabled_at IS NULL AND role = $2))",
        )
        .bind(self.user)
        .bind(self.role.as_str())
        .fetch_one(&mut *tx)
        .await?;
        if stands {
            Ok(tx)
        } else {
            Err(ApiError::Unauthenticated(
                "the token's tenant or user is no longer valid".into(),
            ))
        }
    }
}

/// Implemented by the application state so the extractor can reach the keys.
pub trait HasJwtKeys {
    fn jwt_keys(&self) -> &JwtKeys;
}

impl<S> FromRequestParts<S> for AuthUser
where
    S: HasJwtKeys + Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            ApiError::Unauthenticated("missing Authorization: Bearer <token>".into())
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthenticated(
                    "the Authorization header must be `Bearer <token>`".into(),
                )
            })?;
        let claims = state.jwt_keys().verify(token)?;
        Ok(AuthUser {
            tenant: claims.tid,
            role: claims.role,
            user: claims.sub.parse().ok(),
            subject: claims.sub,
        })
    }
}

/// Hashes a password with Argon2id (the crate's defaults: 19 MiB, 2 passes). CPU-heavy: call it
/// from a blocking task.
pub fn hash_password(password: &SecretString) -> Result<String, ApiError> {
    let salt = SaltString::generate(&mut password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.expose_secret().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::internal(anyhow::anyhow!("password hashing failed: {e}")))
}

/// Checks a password against a stored hash. With no stored hash it still spends the time of a
/// verification, so response timing does not reveal which emails exist.
pub fn verify_password(password: &SecretString, stored: Option<&str>) -> bool {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| {
        hash_password(&SecretString::from("dummy password for timing")).unwrap_or_default()
    });
    let (hash, real) = match stored {
        Some(h) => (h, true),
        None => (dummy.as_str(), false),
    };
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let ok = Argon2::default()
        .verify_password(password.expose_secret().as_bytes(), &parsed)
        .is_ok();
    ok && real
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_and_carry_tenant_and_role() {
        let keys = JwtKeys::new(&SecretString::from("k".repeat(32)));
        let tenant = TenantId::new();
        let token = keys.issue(
            tenant,
            Role::SalesRep,
            "cli:test",
            time::Duration::minutes(5),
        );
        let claims = keys.verify(&token).unwrap();
        assert_eq!(claims.tid, tenant);
        assert_eq!(claims.role, Role::SalesRep);
    }

    #[test]
    fn passwords_verify_only_with_the_right_one() {
        let hash = hash_password(&SecretString::from("كلمة-سر-قوية")).unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(
            &SecretString::from("كلمة-سر-قوية"),
            Some(&hash)
        ));
        assert!(!verify_password(&SecretString::from("wrong"), Some(&hash)));
        assert!(!verify_password(
            &SecretString::from("dummy password for timing"),
            None
        ));
    }
}
