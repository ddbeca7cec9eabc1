//! Test helpers: a fresh real PostgreSQL database per test, and the real server on port 0.
//!
//! The server under test is `WASIT_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`, a superuser, as on the CI machine). Each test
//! creates its own database there, migrates it, and drops it when done.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use api::app::{AppState, router};
use std::sync::Arc;

use api::auth::{JwtKeys, Role};
use runtime::TenantId;
use runtime::actors::Runtime;
use runtime::db::{Database, begin_tenant};
use secrecy::SecretString;
use sqlx::Connection;

pub const JWT_SECRET: &str = "test-secret-of-at-least-32-bytes!!";
pub const WHATSAPP_APP_SECRET: &str = "test-app-secret";
pub const WHATSAPP_VERIFY_TOKEN: &str = "test-verify-token";

pub fn server_url() -> String {
    std::env::var("WASIT_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The URL of database `name` on the test server.
pub fn database_url(name: &str) -> String {
    let mut url = url::Url::parse(&server_url()).expect("WASIT_TEST_DATABASE_URL is a URL");
    url.set_path(name);
    url.to_string()
}

/// A fresh database, dropped when this value is.
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub db: Option<Database>,
}

impl TestDb {
    pub async fn new() -> Self {
        let name = format!("wasit_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&server_url())
            .await
            .expect("the test PostgreSQL server is reachable (is it running?)");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let url = database_url(&name);
        let db = Database::connect(&url, None, None).await.unwrap();
        db.migrate().await.unwrap();
        Self {
            name,
            url,
            db: Some(db),
        }
    }

    pub fn db(&self) -> &Database {
        self.db.as_ref().unwrap()
    }

    /// Creates a tenant through the same repository the CLI uses.
    pub async fn tenant(&self, slug: &str) -> TenantId {
        let slug = runtime::TenantSlug::parse(slug).unwrap();
        api::repo::tenants::create(&self.db().admin, &slug, "Test tenant")
            .await
            .unwrap()
            .id
    }

    /// Creates a user with a password; returns its id.
    pub async fn user(
        &self,
        tenant: TenantId,
        email: &str,
        role: Role,
        password: &str,
    ) -> runtime::UserId {
        let hash = api::auth::hash_password(&SecretString::from(password.to_owned())).unwrap();
        let mut tx = begin_tenant(&self.db().app, tenant).await.unwrap();
        let email = runtime::Email::parse(email).unwrap();
        let user = api::repo::users::create(&mut tx, &email, None, role, Some(&hash))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        user.id
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Do not wait for the pools to close: their connections may be mid-rollback on the test's
        // own runtime, which is blocked right here. DROP ... WITH (FORCE) ends them instead.
        drop(self.db.take());
        let name = self.name.clone();
        // Drop is not async: use a runtime of our own on a thread of our own.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&server_url()).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join()
        .ok();
    }
}

/// The real router served on a loopback port, against a fresh database.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub keys: JwtKeys,
    /// The conversation runtime, when the app was spawned with one.
    pub runtime: Option<Arc<Runtime>>,
    /// What the runtime was built from, to start another (a "restarted process").
    parts: Option<PartsTemplate>,
    /// The knowledge base, its embedded index in a temporary directory.
    pub knowledge: Arc<knowledge_base::KnowledgeBase>,
    pub test_db: TestDb,
}

/// A knowledge base over `pool` with an embedded index (BM25 alone) in a temporary directory
/// that lives as long as the index.
pub async fn knowledge_base(pool: sqlx::PgPool) -> Arc<knowledge_base::KnowledgeBase> {
    let spec = knowledge_base::index::IndexSpec { dense: None };
    let dir = tempfile::tempdir().unwrap();
    let index = knowledge_base::index::edge::EdgeIndex::open(dir.path(), &spec)
        .unwrap()
        .holding(dir);
    let index = Arc::new(index);
    let counter = runtime::llm::tokens::TiktokenCounter::for_model("gpt-4o-mini");
    Arc::new(
        knowledge_base::KnowledgeBase::new(pool, index, None, counter)
            .await
            .unwrap(),
    )
}

#[derive(Clone)]
struct PartsTemplate {
    config: runtime::actors::RuntimeConfig,
    engines: Vec<(runtime::AgentKind, Arc<dyn runtime::turn::TurnEngine>)>,
    senders: runtime::outbox::Senders,
    router: Option<Arc<dyn runtime::turn::Router>>,
    actions: Option<Arc<dyn runtime::actions::ActionHandler>>,
}

static TRACING: AtomicBool = AtomicBool::new(false);

/// The server without the conversation runtime: webhooks store, nothing answers.
pub async fn spawn_app() -> TestApp {
    spawn(None).await
}

/// The server with the conversation runtime, built by `api::wiring` from test settings
/// (`configure` adjusts them) and then `adjust`ed (timers, engines).
pub async fn spawn_app_with(
    configure: impl FnOnce(&mut runtime::Settings),
    adjust: impl FnOnce(&mut runtime::actors::RuntimeParts) + 'static,
) -> TestApp {
    let mut settings = runtime::Settings::from_lookup(|key| match key {
        "WASIT_PROMPTS_DIR" => Some(concat!(env!("CARGO_MANIFEST_DIR"), "/../prompts").to_owned()),
        _ => None,
    })
    .unwrap();
    configure(&mut settings);
    spawn(Some((settings, Box::new(adjust)))).await
}

type Adjust = Box<dyn FnOnce(&mut runtime::actors::RuntimeParts)>;

async fn spawn(with_runtime: Option<(runtime::Settings, Adjust)>) -> TestApp {
    runtime::http::install_tls_provider();
    if !TRACING.swap(true, Ordering::SeqCst)
        && let Ok(filter) = std::env::var("TEST_LOG")
    {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
    }
    let test_db = TestDb::new().await;
    let keys = JwtKeys::new(&SecretString::from(JWT_SECRET));
    let knowledge = knowledge_base(test_db.db().app.clone()).await;
    let mut state = AppState::new(test_db.db().app.clone(), keys.clone())
        .with_knowledge(knowledge.clone())
        .with_platform(test_db.db().platform_pool())
        .with_whatsapp(Some(api::app::WhatsAppWebhook {
            app_secret: SecretString::from(WHATSAPP_APP_SECRET),
            verify_token: SecretString::from(WHATSAPP_VERIFY_TOKEN),
        }));
    let mut parts_template = None;
    let mut running = None;
    if let Some((settings, adjust)) = with_runtime {
        let mut parts = api::wiring::runtime_parts(
            &settings,
            test_db.db().app.clone(),
            Some(knowledge.clone()),
        )
        .await
        .unwrap();
        adjust(&mut parts);
        let template = PartsTemplate {
            config: parts.config.clone(),
            engines: parts.engines.clone(),
            senders: parts.senders.clone(),
            router: parts.router.clone(),
            actions: parts.actions.clone(),
        };
        let rt = Arc::new(Runtime::start(parts).await.unwrap());
        state = state.with_runtime(rt.clone());
        running = Some(rt);
        parts_template = Some(template);
    }
    state.mark_started();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    TestApp {
        addr,
        client: reqwest::Client::new(),
        keys,
        runtime: running,
        parts: parts_template,
        knowledge,
        test_db,
    }
}

impl TestApp {
    /// Parts for another runtime over the same database, as a restarted process would build.
    pub fn runtime_parts(&self) -> runtime::actors::RuntimeParts {
        let t = self.parts.clone().expect("spawned with a runtime");
        runtime::actors::RuntimeParts {
            pool: self.test_db.db().app.clone(),
            config: t.config,
            engines: t.engines,
            senders: t.senders,
            router: t.router,
            actions: t.actions,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A token whose subject is a real user of `tenant` with `role`, created for it.
    pub async fn user_token(&self, tenant: TenantId, role: Role) -> String {
        let email = format!(
            "{}-{}@example.com",
            role.as_str(),
            uuid::Uuid::new_v4().simple()
        );
        let user = self
            .test_db
            .user(tenant, &email, role, "long enough password")
            .await;
        self.keys
            .issue(tenant, role, &user.to_string(), time::Duration::minutes(10))
    }

    pub fn token(&self, tenant: TenantId, role: Role) -> String {
        self.keys
            .issue(tenant, role, "cli:test", time::Duration::minutes(10))
    }

    /// Posts `body` to the WhatsApp webhook with Meta's signature over exactly these bytes.
    pub async fn post_whatsapp(&self, body: &[u8]) -> reqwest::Response {
        let signature = channels::whatsapp::sign(WHATSAPP_APP_SECRET.as_bytes(), body);
        self.client
            .post(self.url("/webhooks/whatsapp"))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", signature)
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
    }

    /// A row count over all tenants (the admin pool is a superuser here, so RLS does not apply).
    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.test_db.db().admin)
            .await
            .unwrap()
    }

    /// Any method, with an optional bearer token and JSON body.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> reqwest::Response {
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        req.send().await.unwrap()
    }

    /// GET, expecting 200 and a JSON body.
    pub async fn get_json(&self, path: &str, token: &str) -> serde_json::Value {
        let response = self.get(path, Some(token)).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.expect("a JSON body")
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }
}

/// Asserts the JSON error body and returns its code.
pub async fn error_code(response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status().as_u16(), status, "unexpected status");
    let body: serde_json::Value = response.json().await.expect("error body is JSON");
    let code = body["error"]["code"]
        .as_str()
        .expect("error.code is a string")
        .to_owned();
    assert!(
        body["error"]["message"].is_string(),
        "error.message is a string: {body}"
    );
    code
}
