//! Contacts: `GET/POST /contacts`, `GET/PATCH /contacts/{id}`. Identities are normalised (a phone
//! to `+` and digits, an email to lowercase) so that the same person is found however they were
//! typed; consent is recorded per channel.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use runtime::ContactId;
use serde::Deserialize;

use super::{Page, PageQuery};
use crate::app::AppState;
use crate::auth::{AuthUser, Role};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::repo::Cursor;
use crate::repo::audit;
use crate::repo::contacts::{
    self, Change, ConsentChannel, ConsentStatus, Contact, Filter, Identity, IdentityKind,
};

/// Who may read and change contacts.
pub const ROLES: &[Role] = Role::SALES;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Part of the display name.
    pub q: Option<String>,
    /// A phone, email or BSUID, normalised like stored identities.
    pub identity: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<Contact>>, ApiError> {
    auth.require(ROLES)?;
    let limit = PageQuery::limit_of(q.limit)?;
    let after = super::parse_cursor(q.cursor.as_deref())?;
    let identity = q.identity.as_deref().map(|raw| {
        if raw.contains('@') {
            raw.trim().to_lowercase()
        } else if raw.chars().any(|c| c.is_ascii_digit()) && !raw.contains('.') {
            runtime::inbox::normalize_phone(raw).unwrap_or_else(|| raw.to_owned())
        } else {
            raw.trim().to_owned()
        }
    });
    let filter = Filter {
        name: q.q.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()),
        identity,
    };
    let mut tx = auth.begin(&state.db).await?;
    let items = contacts::list(&mut tx, &filter, after, limit + 1).await?;
    tx.commit().await?;
    Ok(Json(Page::from_rows(items, limit, |x| {
        Cursor::new(x.created_at, x.id.0)
    })))
}

fn contact_id(raw: &str) -> Result<ContactId, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound("contact"))
}

pub async fn get(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Contact>, ApiError> {
    auth.require(ROLES)?;
    let id = contact_id(&id)?;
    let mut tx = auth.begin(&state.db).await?;
    let contact = contacts::find(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(contact))
}

/// An identity as stored: phones as `+` and digits, emails lowercased and checked.
fn normalise(identity: Identity) -> Result<Identity, ApiError> {
    let value = match identity.kind {
        IdentityKind::Phone => runtime::inbox::normalize_phone(&identity.value)
            .filter(|p| (8..=16).contains(&p.len()))
            .ok_or_else(|| {
                ApiError::Invalid(format!("{:?} is not a phone number", identity.value))
            })?,
        IdentityKind::Email => runtime::Email::parse(&identity.value)
            .map_err(ApiError::Invalid)?
            .as_str()
            .to_owned(),
        IdentityKind::WhatsappBsuid | IdentityKind::Chat => {
            let v = identity.value.trim();
            if v.is_empty() || v.len() > 320 {
                return Err(ApiError::Invalid(format!(
                    "a {} has 1 to 320 characters",
                    identity.kind.as_str()
                )));
            }
            v.to_owned()
        }
    };
    Ok(Identity {
        kind: identity.kind,
        value,
    })
}

fn check_text(field: &str, value: Option<&str>, max: usize) -> Result<(), ApiError> {
    match value {
        Some(v) if v.trim().is_empty() || v.chars().count() > max => Err(ApiError::Invalid(
            format!("{field} has 1 to {max} characters"),
        )),
        _ => Ok(()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateContact {
    pub display_name: Option<String>,
    /// BCP 47, e.g. `ar-SA`.
    pub locale: Option<String>,
    #[serde(default)]
    pub identities: Vec<Identity>,
}

pub async fn create(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(req): ApiJson<CreateContact>,
) -> Result<(StatusCode, Json<Contact>), ApiError> {
    auth.require(ROLES)?;
    check_text("display_name", req.display_name.as_deref(), 200)?;
    check_text("locale", req.locale.as_deref(), 35)?;
    let identities = req
        .identities
        .into_iter()
        .map(normalise)
        .collect::<Result<Vec<_>, _>>()?;
    let mut tx = auth.begin(&state.db).await?;
    let contact = contacts::create(
        &mut tx,
        req.display_name.as_deref().map(str::trim),
        req.locale.as_deref(),
        &identities,
    )
    .await?;
    audit::record_new(&mut tx, &auth, "create", "contact", contact.id.0, &contact).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(contact)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateContact {
    #[serde(default, deserialize_with = "super::nullable")]
    pub display_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "super::nullable")]
    pub locale: Option<Option<String>>,
    /// Identities to add (existing ones stay).
    #[serde(default)]
    pub add_identities: Vec<Identity>,
    /// Consent to record, per channel.
    #[serde(default)]
    pub consent: BTreeMap<ConsentChannel, ConsentStatus>,
}

pub async fn update(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateContact>,
) -> Result<Json<Contact>, ApiError> {
    auth.require(ROLES)?;
    let id = contact_id(&id)?;
    check_text(
        "display_name",
        req.display_name.clone().flatten().as_deref(),
        200,
    )?;
    check_text("locale", req.locale.clone().flatten().as_deref(), 35)?;
    let change = Change {
        display_name: req.display_name.map(|n| n.map(|n| n.trim().to_owned())),
        locale: req.locale,
        add_identities: req
            .add_identities
            .into_iter()
            .map(normalise)
            .collect::<Result<Vec<_>, _>>()?,
        consent: req.consent.into_iter().collect(),
    };
    let mut tx = auth.begin(&state.db).await?;
    let before = contacts::find(&mut tx, id).await?;
    let contact = contacts::update(&mut tx, id, &change).await?;
    audit::record(
        &mut tx,
        &auth,
        "update",
        "contact",
        contact.id.0,
        &before,
        &contact,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(contact))
}
