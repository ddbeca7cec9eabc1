//! Users of the caller's tenant: `GET /me`, and for admins `GET/POST /users`, `GET /users/{id}`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use runtime::{Email, UserId};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{Page, PageQuery};
use crate::app::AppState;
use crate::auth::{AuthUser, Role, hash_password};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::repo;
use crate::repo::users::User;

#[derive(Debug, Serialize)]
pub struct Me {
    pub tenant: repo::tenants::Tenant,
    pub role: Role,
    pub subject: String,
    pub user: Option<User>,
}

/// Who the token says the caller is.
pub async fn me(State(state): State<AppState>, auth: AuthUser) -> Result<Json<Me>, ApiError> {
    let mut tx = auth.begin(&state.db).await?;
    let tenant = repo::tenants::current(&mut tx).await?;
    let user = match auth.user {
        Some(id) => Some(repo::users::find(&mut tx, id).await?),
        None => None,
    };
    tx.commit().await?;
    Ok(Json(Me {
        tenant,
        role: auth.role,
        subject: auth.subject,
        user,
    }))
}

pub async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<Page<User>>, ApiError> {
    auth.require(Role::ADMINS)?;
    let limit = page.limit()?;
    let after = match page.cursor.as_deref() {
        None => None,
        Some(c) => Some(
            c.parse::<UserId>()
                .map_err(|_| ApiError::BadRequest("cursor is not valid".into()))?,
        ),
    };
    let mut tx = auth.begin(&state.db).await?;
    let mut items = repo::users::list(&mut tx, after, limit + 1).await?;
    tx.commit().await?;
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|u| u.id.to_string())
    } else {
        None
    };
    Ok(Json(Page { items, next_cursor }))
}

pub async fn get(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<User>, ApiError> {
    auth.require(Role::ADMINS)?;
    let id: UserId = id.parse().map_err(|_| ApiError::NotFound("user"))?;
    let mut tx = auth.begin(&state.db).await?;
    let user = repo::users::find(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(user))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub email: Email,
    pub role: Role,
    pub display_name: Option<String>,
    pub password: Option<SecretString>,
}

pub async fn create(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(req): ApiJson<CreateUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    auth.require(Role::ADMINS)?;
    // Only a superadmin makes superadmins.
    if req.role == Role::Superadmin && auth.role != Role::Superadmin {
        return Err(ApiError::Forbidden);
    }
    let hash = match req.password {
        Some(password) => {
            use secrecy::ExposeSecret;
            if password.expose_secret().chars().count() < 8 {
                return Err(ApiError::Invalid(
                    "a password has at least 8 characters".into(),
                ));
            }
            Some(
                tokio::task::spawn_blocking(move || hash_password(&password))
                    .await
                    .map_err(ApiError::internal)??,
            )
        }
        None => None,
    };
    let mut tx = auth.begin(&state.db).await?;
    let user = repo::users::create(
        &mut tx,
        &req.email,
        req.display_name.as_deref(),
        req.role,
        hash.as_deref(),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(user)))
}
