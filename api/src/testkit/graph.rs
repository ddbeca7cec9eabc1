//! A Meta Graph API stand-in: `POST /{phone_number_id}/messages` with a bearer token. Records every
//! send, answers Meta's success shape with a fresh `wamid`, or, when scripted, Meta's error shape
//! with any code.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

/// One message the server received.
#[derive(Debug, Clone)]
pub struct Sent {
    pub phone_number_id: String,
    pub token: Option<String>,
    pub body: Value,
    /// The id answered, when the send succeeded.
    pub wamid: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    sent: Vec<Sent>,
    /// Scripted answers, used in order before falling back to success.
    script: VecDeque<(u16, i64)>,
    counter: u64,
}

// A test server's state: short critical sections, never held across an await.
type Shared = Arc<StdMutex<Inner>>;

#[derive(Debug, Clone)]
pub struct FakeGraph {
    pub addr: SocketAddr,
    inner: Shared,
}

impl FakeGraph {
    pub async fn start() -> Self {
        let inner: Shared = Arc::default();
        let router = Router::new()
            .route("/{phone_number_id}/messages", post(send))
            .with_state(inner.clone());
        let addr = super::serve(router).await;
        Self { addr, inner }
    }

    /// The base URL to use as `WHATSAPP_GRAPH_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next `times` sends are answered with HTTP `status` and Meta error `code`.
    pub fn fail_next(&self, status: u16, code: i64, times: usize) {
        let mut inner = self.inner.lock().unwrap();
        inner
            .script
            .extend(std::iter::repeat_n((status, code), times));
    }

    /// Every request received so far, failed ones included.
    pub fn requests(&self) -> Vec<Sent> {
        self.inner.lock().unwrap().sent.clone()
    }

    /// How many sends succeeded, without copying them.
    pub fn delivered_count(&self) -> usize {
        self.inner
            .lock()
            .unwrap()
            .sent
            .iter()
            .filter(|s| s.wamid.is_some())
            .count()
    }

    /// The sends that succeeded.
    pub fn delivered(&self) -> Vec<Sent> {
        self.requests()
            .into_iter()
            .filter(|s| s.wamid.is_some())
            .collect()
    }

    /// Waits until at least `n` sends succeeded and returns them; panics, naming what did arrive,
    /// when `timeout` passes first (a test that waits for a reply fails without it, rather than
    /// going on with fewer).
    pub async fn wait_for_delivered(&self, n: usize, timeout: Duration) -> Vec<Sent> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let delivered = self.delivered();
            if delivered.len() >= n {
                return delivered;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "expected {n} delivered message(s) within {timeout:?}, got {}: {:?}",
                delivered.len(),
                delivered.iter().map(|s| &s.body).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn send(
    State(inner): State<Shared>,
    Path(phone_number_id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let mut inner = inner.lock().unwrap();
    let scripted = inner.script.pop_front();
    inner.counter += 1;
    let wamid = format!("wamid.fake{:06}", inner.counter);
    let to = body.get("to").cloned().unwrap_or(Value::Null);
    let (status, answer, delivered) = match scripted {
        Some((status, code)) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            json!({"error": {"message": format!("scripted error {code}"), "type": "OAuthException", "code": code,
                             "error_data": {"details": "scripted by the test"}, "fbtrace_id": "Afake"}}),
            None,
        ),
        None => (
            StatusCode::OK,
            json!({"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}], "messages": [{"id": wamid}]}),
            Some(wamid),
        ),
    };
    inner.sent.push(Sent {
        phone_number_id,
        token,
        body,
        wamid: delivered,
    });
    (status, Json(answer))
}
