//! Provider webhooks: `GET/POST /webhooks/whatsapp`.
//!
//! A notification is verified over its raw bytes, parsed, and committed to the inbox before it is
//! answered 200; anything that fails before the commit answers an error and stores nothing, so
//! the provider retries (deduplication makes retries harmless).

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use secrecy::ExposeSecret;

use crate::app::AppState;
use crate::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/webhooks/whatsapp",
        get(whatsapp_handshake).post(whatsapp_notification),
    )
}

/// Meta's subscription handshake: the challenge echoed exactly, or 403.
async fn whatsapp_handshake(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let Some(config) = &state.whatsapp else {
        tracing::warn!("WhatsApp handshake refused: WHATSAPP_VERIFY_TOKEN is not configured");
        return StatusCode::FORBIDDEN.into_response();
    };
    let get = |k: &str| params.get(k).map(String::as_str);
    match channels::whatsapp::verify_subscription(
        get("hub.mode"),
        get("hub.verify_token"),
        get("hub.challenge"),
        config.verify_token.expose_secret(),
    ) {
        Some(challenge) => (StatusCode::OK, challenge.to_owned()).into_response(),
        None => StatusCode::FORBIDDEN.into_response(),
    }
}

/// A signed notification: verify, parse, commit, answer.
async fn whatsapp_notification(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let Some(config) = &state.whatsapp else {
        tracing::error!("WhatsApp notification refused: WHATSAPP_APP_SECRET is not configured");
        return Err(ApiError::Unavailable(
            "the WhatsApp webhook is not configured".into(),
        ));
    };
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    channels::whatsapp::verify_meta_signature(
        config.app_secret.expose_secret().as_bytes(),
        &body,
        signature,
    )
    .map_err(|e| {
        tracing::warn!(error = %e, "WhatsApp notification with a bad signature");
        ApiError::Unauthenticated(e.to_string())
    })?;
    let (batches, rejects) = channels::whatsapp::parse_notification(&body)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let outcome = runtime::inbox::store(&state.db, batches, rejects).await?;
    // Committed: now the conversation actors may run (and the 200 may go out).
    if let Some(runtime) = &state.runtime {
        runtime.deliver(&outcome.accepted);
    }
    tracing::debug!(
        accepted = outcome.accepted.len(),
        duplicates = outcome.duplicates,
        statuses = outcome.statuses,
        unroutable = outcome.unroutable,
        "WhatsApp notification stored"
    );
    Ok(StatusCode::OK)
}
