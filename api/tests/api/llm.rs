//! The OpenAI-compatible provider against a local server that speaks OpenAI's wire format:
//! tool-call round trips (parallel calls included), streaming assembly, `Retry-After` on 429,
//! the circuit breaker, a hung call's timeout, and embeddings.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use api::testkit::llm::{FakeLlm, Reply, fake_embedding};
use runtime::llm::openai::{OpenAiProvider, ProviderConfig};
use runtime::llm::resilience::RetryPolicy;
use runtime::llm::{ChatMessage, ChatModel, ChatRequest, LlmError, ToolChoice, ToolSpec};
use serde_json::{Value, json};

fn provider(llm: &FakeLlm, config: ProviderConfig) -> OpenAiProvider {
    runtime::http::install_tls_provider();
    OpenAiProvider::new(&llm.url(), "sk-test", "gpt-4o-mini", config)
}

fn quick(max_attempts: u32) -> ProviderConfig {
    ProviderConfig {
        timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_attempts,
            base: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            max_retry_after: Duration::from_secs(5),
        },
        breaker_threshold: 3,
        breaker_cooldown: Duration::from_secs(60),
        context_window: None,
    }
}

fn tools() -> Vec<ToolSpec> {
    vec![
        ToolSpec {
            name: "gold_price".into(),
            description: "Today's price of gold per gram".into(),
            parameters: json!({"type": "object", "properties": {"karat": {"type": "integer"}}, "required": ["karat"]}),
        },
        ToolSpec {
            name: "escalate".into(),
            description: "Hand over to a human".into(),
            parameters: json!({"type": "object", "properties": {"reason": {"type": "string"}}, "required": ["reason"]}),
        },
    ]
}

fn request(text: &str) -> ChatRequest {
    ChatRequest {
        model: None,
        system: "أنت مساعد مبيعات".into(),
        messages: vec![ChatMessage::User(text.into())],
        tools: tools(),
        tool_choice: ToolChoice::Auto,
        temperature: 0.2,
        max_output_tokens: 200,
    }
}

/// The model asks for two tools at once; their results go back with their call ids and the model
/// then answers in Arabic.
#[tokio::test]
async fn parallel_tool_calls_round_trip() {
    let llm = FakeLlm::start().await;
    llm.respond_with(|req| {
        let last = req["messages"].as_array().unwrap().last().unwrap().clone();
        if last["role"] == "tool" {
            Reply::Text("سعر الذهب عيار ٢١ اليوم ٢٥٠ ريالًا للغرام".into())
        } else {
            Reply::ToolCalls(vec![
                ("gold_price".into(), json!({"karat": 21})),
                ("gold_price".into(), json!({"karat": 24})),
            ])
        }
    });
    let p = provider(&llm, quick(1));
    let mut req = request("كم سعر الذهب؟");
    let first = p.chat(&req, None).await.unwrap();
    assert_eq!(first.tool_calls.len(), 2);
    assert_eq!(first.tool_calls[0].name, "gold_price");
    let args: Vec<Value> = first
        .tool_calls
        .iter()
        .map(|c| serde_json::from_str(&c.arguments).unwrap())
        .collect();
    assert_eq!(args, vec![json!({"karat": 21}), json!({"karat": 24})]);
    assert_ne!(first.tool_calls[0].id, first.tool_calls[1].id);

    req.messages.push(ChatMessage::Assistant {
        text: None,
        tool_calls: first.tool_calls.clone(),
    });
    for (call, price) in first.tool_calls.iter().zip(["250", "285"]) {
        req.messages.push(ChatMessage::Tool {
            call_id: call.id.clone(),
            content: json!({"price_sar": price}).to_string(),
        });
    }
    let second = p.chat(&req, None).await.unwrap();
    assert_eq!(
        second.text.as_deref(),
        Some("سعر الذهب عيار ٢١ اليوم ٢٥٠ ريالًا للغرام")
    );
    assert!(second.tool_calls.is_empty());

    let sent = llm.requests();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0]["model"], "gpt-4o-mini");
    assert_eq!(sent[0]["parallel_tool_calls"], true);
    assert_eq!(sent[0]["tools"].as_array().unwrap().len(), 2);
    assert_eq!(sent[0]["tools"][0]["function"]["name"], "gold_price");
    let messages = sent[1]["messages"].as_array().unwrap();
    let assistant = &messages[messages.len() - 3];
    assert_eq!(assistant["tool_calls"].as_array().unwrap().len(), 2);
    assert_eq!(
        messages[messages.len() - 1]["tool_call_id"],
        first.tool_calls[1].id.as_str()
    );
}

/// Streamed text arrives in pieces, each of whole characters, and adds up to the whole answer;
/// streamed tool calls (two, arguments in parts) are assembled; usage comes from the last chunk.
#[tokio::test]
async fn streaming_assembles_text_and_tool_calls() {
    let llm = FakeLlm::start().await;
    let answer = "أهلًا! سبيكة ١٠ غرامات متوفرة — Gold bar in stock.";
    llm.respond_with(move |req| {
        if req["messages"].as_array().unwrap().len() > 2 {
            Reply::ToolCalls(vec![
                ("gold_price".into(), json!({"karat": 18})),
                ("escalate".into(), json!({"reason": "يريد خصمًا خاصًا"})),
            ])
        } else {
            Reply::Text(answer.into())
        }
    });
    let p = provider(&llm, quick(1));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let response = p.chat(&request("مرحبا"), Some(tx)).await.unwrap();
    assert_eq!(response.text.as_deref(), Some(answer));
    let mut pieces = Vec::new();
    while let Ok(p) = rx.try_recv() {
        pieces.push(p);
    }
    assert!(pieces.len() > 5, "{pieces:?}");
    assert_eq!(pieces.concat(), answer);
    assert!(response.tokens_in > 0 && response.tokens_out > 0);
    assert_eq!(llm.requests()[0]["stream"], true);
    assert_eq!(llm.requests()[0]["stream_options"]["include_usage"], true);

    let mut req = request("مرحبا");
    req.messages.push(ChatMessage::Assistant {
        text: Some("?".into()),
        tool_calls: vec![],
    });
    req.messages.push(ChatMessage::User("خصم؟".into()));
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let calls = p.chat(&req, Some(tx)).await.unwrap().tool_calls;
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].name, "escalate");
    assert_eq!(
        serde_json::from_str::<Value>(&calls[1].arguments).unwrap(),
        json!({"reason": "يريد خصمًا خاصًا"})
    );
    assert_eq!(
        serde_json::from_str::<Value>(&calls[0].arguments).unwrap(),
        json!({"karat": 18})
    );
}

/// A 429 with `Retry-After: 1` is retried after (at least) that second, then succeeds.
#[tokio::test]
async fn rate_limited_with_retry_after_then_success() {
    let llm = FakeLlm::start().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    llm.respond_with(move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::RateLimited("1".into())
        } else {
            Reply::Text("done".into())
        }
    });
    let p = provider(&llm, quick(3));
    let response = p.chat(&request("hi"), None).await.unwrap();
    assert_eq!(response.text.as_deref(), Some("done"));
    let arrivals = llm.arrivals();
    assert_eq!(arrivals.len(), 2);
    let gap = arrivals[1] - arrivals[0];
    assert!(
        gap >= Duration::from_millis(950),
        "retried after {gap:?}, before the server's Retry-After of 1 s"
    );
    assert!(!p.breaker_open());
}

/// A `Retry-After` beyond the policy's cap is not waited for: the call fails as unavailable, for
/// the turn to be retried later.
#[tokio::test]
async fn a_retry_after_beyond_the_cap_fails_the_call_at_once() {
    let llm = FakeLlm::start().await;
    llm.respond_with(|_| Reply::RateLimited("3600".into()));
    let p = provider(&llm, quick(3));
    let err = p.chat(&request("hi"), None).await.unwrap_err();
    assert!(matches!(err, LlmError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("429"), "{err}");
    assert_eq!(llm.requests().len(), 1);
}

/// Repeated 500s: each call retries within its policy, the breaker counts failed calls and opens
/// at its threshold; then calls fail fast without reaching the endpoint.
#[tokio::test]
async fn repeated_server_errors_open_the_breaker() {
    let llm = FakeLlm::start().await;
    llm.respond_with(|_| Reply::Error(500));
    let p = provider(&llm, quick(1));
    for _ in 0..3 {
        let err = p.chat(&request("hi"), None).await.unwrap_err();
        assert!(matches!(err, LlmError::Unavailable(_)), "{err:?}");
        assert!(err.to_string().contains("500"), "{err}");
    }
    assert!(p.breaker_open());
    let before = llm.requests().len();
    let err = p.chat(&request("hi"), None).await.unwrap_err();
    assert!(matches!(err, LlmError::CircuitOpen { .. }), "{err:?}");
    assert!(err.is_temporary());
    assert_eq!(
        llm.requests().len(),
        before,
        "an open breaker sends nothing"
    );

    // A 4xx is the caller's fault, not an outage: it never opens the breaker.
    let llm = FakeLlm::start().await;
    llm.respond_with(|_| Reply::Error(400));
    let p = provider(&llm, quick(3));
    for _ in 0..5 {
        let err = p.chat(&request("hi"), None).await.unwrap_err();
        assert!(matches!(err, LlmError::Rejected(_)), "{err:?}");
    }
    assert!(!p.breaker_open());
    assert_eq!(llm.requests().len(), 5, "a rejection is not retried");
}

/// A call that hangs is cut at the per-attempt timeout and retried, then reported as a timeout.
#[tokio::test]
async fn a_hung_call_times_out() {
    let llm = FakeLlm::start().await;
    llm.respond_with(|_| {
        Reply::Delayed(
            Duration::from_secs(30),
            Box::new(Reply::Text("late".into())),
        )
    });
    let config = ProviderConfig {
        timeout: Duration::from_millis(300),
        ..quick(2)
    };
    let p = provider(&llm, config);
    let err = p.chat(&request("hi"), None).await.unwrap_err();
    assert!(matches!(err, LlmError::Timeout(_)), "{err:?}");
    assert!(err.is_temporary());
    assert_eq!(llm.requests().len(), 2, "one retry after the first timeout");
}

#[tokio::test]
async fn embeddings_come_back_in_input_order() {
    let llm = FakeLlm::start().await;
    let p = provider(&llm, quick(1));
    let inputs = vec!["ضمان الذهب".to_owned(), "gold guarantee".to_owned()];
    let vectors = p.embed("text-embedding-3-small", &inputs).await.unwrap();
    assert_eq!(
        vectors,
        vec![fake_embedding(&inputs[0]), fake_embedding(&inputs[1])]
    );
    assert_eq!(llm.requests()[0]["model"], "text-embedding-3-small");
}
