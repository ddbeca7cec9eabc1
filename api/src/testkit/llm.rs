//! An OpenAI-compatible chat-completions stand-in: `POST /v1/chat/completions`. Records every
//! request and answers in OpenAI's wire format: text, tool calls, or an HTTP error, optionally
//! after a delay, as the test's responder decides. The default responder answers instantly with
//! the last user message prefixed by `رد: `.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

/// What the fake model answers.
#[derive(Debug, Clone)]
pub enum Reply {
    Text(String),
    /// Tool calls: (function name, arguments object).
    ToolCalls(Vec<(String, Value)>),
    /// An HTTP error status with OpenAI's error body.
    Error(u16),
    /// The inner reply, after a pause (to test timeouts and superseded generations).
    Delayed(Duration, Box<Reply>),
}

pub type Responder = Arc<dyn Fn(&Value) -> Reply + Send + Sync>;

#[derive(Clone)]
struct Shared {
    requests: Arc<StdMutex<Vec<Value>>>,
    responder: Arc<StdMutex<Responder>>,
    counter: Arc<AtomicU64>,
    /// Off for load tests: requests are counted, not kept.
    recording: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Clone)]
pub struct FakeLlm {
    pub addr: SocketAddr,
    shared: Shared,
}

impl std::fmt::Debug for FakeLlm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeLlm")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// The text of the last `user` message of a chat-completions request.
pub fn last_user_text(request: &Value) -> String {
    request["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl FakeLlm {
    pub async fn start() -> Self {
        let default: Responder =
            Arc::new(|req: &Value| Reply::Text(format!("رد: {}", last_user_text(req))));
        let shared = Shared {
            requests: Arc::default(),
            responder: Arc::new(StdMutex::new(default)),
            counter: Arc::default(),
            recording: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        };
        let router = Router::new()
            .route("/v1/chat/completions", post(complete))
            .route("/chat/completions", post(complete))
            .with_state(shared.clone());
        let addr = super::serve(router).await;
        Self { addr, shared }
    }

    /// The base URL to use as `LLM_BASE_URL`.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn respond_with(&self, responder: impl Fn(&Value) -> Reply + Send + Sync + 'static) {
        *self.shared.responder.lock().unwrap() = Arc::new(responder);
    }

    /// Stops keeping request bodies (a load test sends too many to keep).
    pub fn stop_recording(&self) {
        self.shared.recording.store(false, Ordering::SeqCst);
    }

    /// How many requests were answered.
    pub fn answered(&self) -> u64 {
        self.shared.counter.load(Ordering::SeqCst)
    }

    /// Every request body received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.shared.requests.lock().unwrap().clone()
    }
}

async fn complete(State(shared): State<Shared>, Json(request): Json<Value>) -> Response {
    if shared.recording.load(Ordering::SeqCst) {
        shared.requests.lock().unwrap().push(request.clone());
    }
    let responder = shared.responder.lock().unwrap().clone();
    let mut reply = responder(&request);
    while let Reply::Delayed(pause, inner) = reply {
        tokio::time::sleep(pause).await;
        reply = *inner;
    }
    let n = shared.counter.fetch_add(1, Ordering::SeqCst);
    let model = request["model"].as_str().unwrap_or("fake-model").to_owned();
    let prompt_tokens = request.to_string().chars().count() as u64 / 4;
    let (message, finish_reason, completion_tokens) = match reply {
        Reply::Text(text) => {
            let tokens = text.chars().count() as u64 / 4 + 1;
            (
                json!({"role": "assistant", "content": text}),
                "stop",
                tokens,
            )
        }
        Reply::ToolCalls(calls) => {
            let calls: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(i, (name, args))| {
                    json!({"id": format!("call_{n}_{i}"), "type": "function",
                           "function": {"name": name, "arguments": args.to_string()}})
                })
                .collect();
            (
                json!({"role": "assistant", "content": null, "tool_calls": calls}),
                "tool_calls",
                10,
            )
        }
        Reply::Error(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = json!({"error": {"message": "scripted failure", "type": "server_error", "code": null}});
            return (status, Json(body)).into_response();
        }
        Reply::Delayed(..) => unreachable!("unwrapped above"),
    };
    Json(json!({
        "id": format!("chatcmpl-fake{n}"),
        "object": "chat.completion",
        "created": 1_700_000_000u64 + n,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": null}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens}
    }))
    .into_response()
}
