//! An OpenAI-compatible stand-in: `POST /v1/chat/completions` and `POST /v1/embeddings`.
//! Records every request (and when it arrived) and answers in OpenAI's wire format: text, tool
//! calls, an HTTP error (with `Retry-After` when scripted), optionally after a delay, as the test's
//! responder decides; as server-sent events when the request asks for `stream: true` (text in
//! small pieces that split multi-byte characters' neighbours, tool-call arguments in parts, a
//! usage chunk, then `[DONE]`). The default responder answers instantly with the last user
//! message prefixed by `رد: `.

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
    /// 429 with this `Retry-After` header value.
    RateLimited(String),
}

pub type Responder = Arc<dyn Fn(&Value) -> Reply + Send + Sync>;

#[derive(Clone)]
struct Shared {
    requests: Arc<StdMutex<Vec<Value>>>,
    arrivals: Arc<StdMutex<Vec<std::time::Instant>>>,
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
            arrivals: Arc::default(),
            responder: Arc::new(StdMutex::new(default)),
            counter: Arc::default(),
            recording: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        };
        let router = Router::new()
            .route("/v1/chat/completions", post(complete))
            .route("/chat/completions", post(complete))
            .route("/v1/embeddings", post(embeddings))
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

    /// When each request arrived, in order.
    pub fn arrivals(&self) -> Vec<std::time::Instant> {
        self.shared.arrivals.lock().unwrap().clone()
    }
}

/// A deterministic 8-dimensional embedding of `text` (its bytes folded), for tests.
pub fn fake_embedding(text: &str) -> Vec<f32> {
    let mut v = [0f32; 8];
    for (i, b) in text.bytes().enumerate() {
        v[i % 8] += f32::from(b) / 255.0;
    }
    v.to_vec()
}

async fn embeddings(State(shared): State<Shared>, Json(request): Json<Value>) -> Response {
    shared
        .arrivals
        .lock()
        .unwrap()
        .push(std::time::Instant::now());
    if shared.recording.load(Ordering::SeqCst) {
        shared.requests.lock().unwrap().push(request.clone());
    }
    let inputs: Vec<String> = match &request["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": fake_embedding(t)}))
        .collect();
    let tokens: usize = inputs.iter().map(|t| t.len() / 4 + 1).sum();
    Json(
        json!({"object": "list", "model": request["model"], "data": data,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
    )
    .into_response()
}

/// Splits `text` into pieces of about three characters (never inside a character).
fn pieces(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(3).map(|c| c.iter().collect()).collect()
}

fn sse(events: Vec<Value>) -> Response {
    let mut body = String::new();
    for e in events {
        body.push_str(&format!("data: {e}\n\n"));
    }
    body.push_str("data: [DONE]\n\n");
    (
        [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
        body,
    )
        .into_response()
}

async fn complete(State(shared): State<Shared>, Json(request): Json<Value>) -> Response {
    shared
        .arrivals
        .lock()
        .unwrap()
        .push(std::time::Instant::now());
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
    // Like OpenAI, answer with the dated snapshot of the model asked for.
    let model = format!(
        "{}-2024-07-18",
        request["model"].as_str().unwrap_or("fake-model")
    );
    let prompt_tokens = request.to_string().chars().count() as u64 / 4;
    let streaming = request["stream"] == true;
    let id = format!("chatcmpl-fake{n}");
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({"id": id, "object": "chat.completion.chunk", "created": 1_700_000_000u64 + n,
               "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}]})
    };
    let usage_chunk = |completion_tokens: u64| {
        json!({"id": id, "object": "chat.completion.chunk", "created": 1_700_000_000u64 + n,
               "model": model, "choices": [],
               "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                         "total_tokens": prompt_tokens + completion_tokens}})
    };
    let (message, finish_reason, completion_tokens) = match reply {
        Reply::Text(text) if streaming => {
            let tokens = text.chars().count() as u64 / 4 + 1;
            let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
            events.extend(
                pieces(&text)
                    .into_iter()
                    .map(|p| chunk(json!({"content": p}), None)),
            );
            events.push(chunk(json!({}), Some("stop")));
            events.push(usage_chunk(tokens));
            return sse(events);
        }
        Reply::ToolCalls(calls) if streaming => {
            let mut events = vec![chunk(json!({"role": "assistant", "content": null}), None)];
            for (i, (name, args)) in calls.iter().enumerate() {
                let args = args.to_string();
                let (a, b) = args.split_at(args.floor_char_boundary(args.len() / 2));
                events.push(chunk(json!({"tool_calls": [{"index": i, "id": format!("call_{n}_{i}"), "type": "function", "function": {"name": name, "arguments": ""}}]}), None));
                events.push(chunk(
                    json!({"tool_calls": [{"index": i, "function": {"arguments": a}}]}),
                    None,
                ));
                events.push(chunk(
                    json!({"tool_calls": [{"index": i, "function": {"arguments": b}}]}),
                    None,
                ));
            }
            events.push(chunk(json!({}), Some("tool_calls")));
            events.push(usage_chunk(10));
            return sse(events);
        }
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
        Reply::RateLimited(retry_after) => {
            let body = json!({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}});
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(axum::http::header::RETRY_AFTER, retry_after)],
                Json(body),
            )
                .into_response();
        }
        Reply::Delayed(..) => unreachable!("unwrapped above"),
    };
    Json(json!({
        "id": id,
        "object": "chat.completion",
        "created": 1_700_000_000u64 + n,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": null}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens}
    }))
    .into_response()
}
