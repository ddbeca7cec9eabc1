//! The agent's context rules without a server: a long conversation is summarised before it
//! outgrows what a turn loads, even when the model's window would hold it all; a short one is not.

use std::sync::{Arc, Mutex};

use agents::llm_agent::LlmAgent;
use agents::prompt::PromptStore;
use runtime::MessageId;
use runtime::llm::tokens::TiktokenCounter;
use runtime::llm::{
    BoxFuture, ChatModel, ChatRequest, ChatResponse, Llm, LlmError, PriceTable, TextSink,
    TokenCounter,
};
use runtime::turn::{HistoryItem, Speaker, TurnEngine, TurnInput};

/// A model with a 128k window that answers "ok", or "SUMMARY" to summary requests, and keeps
/// every request.
#[derive(Default)]
struct Recording {
    requests: Mutex<Vec<ChatRequest>>,
}

impl ChatModel for Recording {
    fn describe(&self) -> String {
        "recording".into()
    }
    fn default_model(&self) -> &str {
        "gpt-4o-mini"
    }
    fn selects_models(&self) -> bool {
        true
    }
    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
        _stream: Option<TextSink>,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
        self.requests.lock().unwrap().push(request.clone());
        let text = if request.system.contains("running summary") {
            "SUMMARY"
        } else {
            "ok"
        };
        Box::pin(async move {
            Ok(ChatResponse {
                text: Some(text.into()),
                tool_calls: Vec::new(),
                tokens_in: 10,
                tokens_out: 1,
                model: "gpt-4o-mini".into(),
                latency: std::time::Duration::ZERO,
            })
        })
    }
    fn embed<'a>(
        &'a self,
        _model: &'a str,
        _inputs: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, LlmError>> {
        Box::pin(async { Err(LlmError::Rejected("no embeddings".into())) })
    }
    fn counter(&self, model: &str) -> Arc<dyn TokenCounter> {
        TiktokenCounter::for_model(model)
    }
    fn context_window(&self, _model: &str) -> u32 {
        128_000
    }
}

fn input(history_len: usize) -> TurnInput {
    let mut input = runtime::bench::sample_input(runtime::AgentKind::Sales, "وبعدين؟");
    input.history = (0..history_len)
        .map(|i| HistoryItem {
            id: MessageId(uuid::Uuid::new_v4()),
            seq: 1000 + i as i64,
            role: if i % 2 == 0 {
                Speaker::Contact
            } else {
                Speaker::Agent
            },
            text: format!("رسالة {i}"),
            tokens: None,
        })
        .collect();
    input
}

fn agent(model: Arc<Recording>) -> LlmAgent {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../prompts");
    let prompts = Arc::new(PromptStore::load(std::path::Path::new(dir)).unwrap());
    let llm = Llm::new(model, None, PriceTable::default());
    LlmAgent::new(runtime::AgentKind::Sales, prompts, Ok(llm))
}

#[tokio::test]
async fn a_long_history_is_summarised_before_a_turn_could_lose_it() {
    let model = Arc::new(Recording::default());
    let outcome = agent(model.clone()).run(input(160)).await.unwrap();
    let summary = outcome
        .summary
        .expect("a summary, though 128k tokens would hold it all");
    assert_eq!(summary.text, "SUMMARY");
    // The oldest 85 go into the summary; the newest 75 (half the threshold) stay as messages.
    assert_eq!(summary.through_seq, 1000 + 84);
    let requests = model.requests.lock().unwrap();
    assert_eq!(requests.len(), 2, "one summary call, one answer");
    let answer = &requests[1];
    assert!(answer.system.contains("SUMMARY"));
    assert_eq!(answer.messages.len(), 75 + 1);
    // Every message was counted once, for storing.
    assert_eq!(outcome.token_counts.len(), 161);
    assert_eq!(outcome.token_encoding, "o200k_base");
    assert_eq!(outcome.audit.calls, 2);
}

#[tokio::test]
async fn a_short_history_needs_no_summary() {
    let model = Arc::new(Recording::default());
    let outcome = agent(model.clone()).run(input(40)).await.unwrap();
    assert!(outcome.summary.is_none());
    assert_eq!(model.requests.lock().unwrap().len(), 1);
    assert_eq!(outcome.replies, vec!["ok".to_owned()]);
}
