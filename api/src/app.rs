//! The HTTP application: shared state, the router, and serving until a shutdown signal.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use secrecy::SecretString;
use sqlx::PgPool;

use crate::auth::{HasJwtKeys, JwtKeys};
use crate::error::ApiError;
use crate::extract::BODY_LIMIT;
use crate::routes;

/// What every handler can reach. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The `wasit_app` pool: every query of every request runs through it.
    pub db: PgPool,
    pub jwt: JwtKeys,
    /// Set once the runtime has started; `/readyz` reports it.
    pub started: Arc<AtomicBool>,
    /// Bounds concurrent password verifications (Argon2id: ~19 MiB and tens of milliseconds
    /// each), so a burst of logins queues instead of exhausting memory and blocking threads.
    pub password_checks: Arc<tokio::sync::Semaphore>,
    /// The WhatsApp webhook's secrets; `None` until both are configured (the webhook answers 503).
    pub whatsapp: Option<Arc<WhatsAppWebhook>>,
    /// The conversation runtime that new messages are delivered to; without it, messages wait in
    /// PostgreSQL for the next start.
    pub runtime: Option<Arc<runtime::actors::Runtime>>,
    /// The `wasit_platform` pool, for superadmins' platform routes; `None`: they answer 503.
    pub platform: Option<PgPool>,
    /// The knowledge base (articles, search); `None`: its routes answer 503.
    pub knowledge: Option<Arc<knowledge_base::KnowledgeBase>>,
}

/// `WHATSAPP_APP_SECRET` (signatures) and `WHATSAPP_VERIFY_TOKEN` (the handshake).
#[derive(Debug)]
pub struct WhatsAppWebhook {
    pub app_secret: SecretString,
    pub verify_token: SecretString,
}

impl WhatsAppWebhook {
    pub fn from_settings(settings: &runtime::Settings) -> Option<Self> {
        Some(Self {
            app_secret: settings.whatsapp_app_secret.clone()?,
            verify_token: settings.whatsapp_verify_token.clone()?,
        })
    }
}

impl AppState {
    pub fn new(db: PgPool, jwt: JwtKeys) -> Self {
        Self {
            db,
            jwt,
            started: Arc::new(AtomicBool::new(false)),
            password_checks: Arc::new(tokio::sync::Semaphore::new(4)),
            whatsapp: None,
            runtime: None,
            platform: None,
            knowledge: None,
        }
    }

    pub fn with_knowledge(mut self, knowledge: Arc<knowledge_base::KnowledgeBase>) -> Self {
        self.knowledge = Some(knowledge);
        self
    }

    pub fn with_platform(mut self, pool: PgPool) -> Self {
        self.platform = Some(pool);
        self
    }

    pub fn with_runtime(mut self, runtime: Arc<runtime::actors::Runtime>) -> Self {
        self.runtime = Some(runtime);
        self
    }

    pub fn with_whatsapp(mut self, webhook: Option<WhatsAppWebhook>) -> Self {
        self.whatsapp = webhook.map(Arc::new);
        self
    }

    pub fn mark_started(&self) {
        self.started.store(true, Ordering::SeqCst);
    }
}

impl HasJwtKeys for AppState {
    fn jwt_keys(&self) -> &JwtKeys {
        &self.jwt
    }
}

/// Every route of the server.
pub fn router(state: AppState) -> Router {
    let api = routes::api_v1()
        .fallback(|| async { ApiError::NotFound("route") })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed });
    Router::new()
        .route(
            "/openapi.json",
            axum::routing::get(crate::openapi::openapi_json),
        )
        .route("/docs", axum::routing::get(crate::openapi::docs_page))
        .route("/metrics", axum::routing::get(routes::metrics::metrics))
        .merge(routes::health::router())
        .merge(routes::webhooks::router())
        .nest("/api/v1", api)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Resolves when the process receives SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, draining"),
        () = terminate => tracing::info!("SIGTERM received, draining"),
    }
}
