//! `POST /api/v1/auth/login`: tenant slug, email and password in; a token out.
//!
//! Login is the one place a tenant is named by the caller, and it grants nothing until the
//! password has been verified inside that tenant. Every failure is the same 401, with the same
//! cost, whether the tenant, the email or the password was wrong.

use axum::Json;
use axum::extract::State;
use runtime::db::begin_tenant;
use runtime::{Email, TenantId, TenantSlug};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::auth::{Role, verify_password};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::repo;

/// How long a login token lasts.
pub const LOGIN_TTL: time::Duration = time::Duration::hours(12);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub tenant: TenantSlug,
    pub email: Email,
    pub password: SecretString,
}

#[derive(Debug, Serialize)]
pub struct LoginResponse {
    pub token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub role: Role,
}

pub async fn login(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    // An unknown slug still runs the same queries (against the nil tenant, which matches no row)
    // and the same hash check, so timing does not tell which tenants exist.
    let tenant = runtime::db::tenant_id_by_slug(&state.db, &req.tenant)
        .await?
        .unwrap_or(TenantId(uuid::Uuid::nil()));
    let mut tx = begin_tenant(&state.db, tenant).await?;
    let found = repo::users::find_for_login(&mut tx, &req.email).await?;
    tx.commit().await?;
    let stored_hash = found
        .as_ref()
        .and_then(|(u, h)| (!u.disabled).then(|| h.clone()).flatten());
    let password = req.password;
    let _permit = state
        .password_checks
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    let ok =
        tokio::task::spawn_blocking(move || verify_password(&password, stored_hash.as_deref()))
            .await
            .map_err(ApiError::internal)?;
    match found {
        Some((user, _)) if ok => {
            let token = state
                .jwt
                .issue(tenant, user.role, &user.id.to_string(), LOGIN_TTL);
            Ok(Json(LoginResponse {
                token,
                token_type: "Bearer",
                expires_in: LOGIN_TTL.whole_seconds(),
                role: user.role,
            }))
        }
        _ => Err(ApiError::Unauthenticated(
            "wrong tenant, email or password".into(),
        )),
    }
}
