//! Per-turn overhead of context assembly: render the prompt file, build the tool schemas, count
//! what needs counting, fit the window and build the request, for a turn with a 50-message
//! history — once with every history message's count stored (the steady state: a message is
//! counted once, when a turn first sees it) and once with none stored (the first turn after an
//! upgrade). Not a pass/fail test: the figures go to docs/BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p agents --bench context -- [--iterations 20000]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use agents::llm_agent::LlmAgent;
use agents::prompt::PromptStore;
use runtime::MessageId;
use runtime::llm::openai::{OpenAiProvider, ProviderConfig};
use runtime::llm::{Llm, PriceTable};
use runtime::turn::{HistoryItem, Speaker, TurnInput};

fn input(counter: Option<&dyn runtime::llm::TokenCounter>) -> TurnInput {
    let lines = [
        "السلام عليكم، أبغى أعرف سعر سبيكة الذهب عيار ٢٤ وزن ١٠٠ غرام",
        "وعليكم السلام! سعر السبيكة اليوم يعتمد على سعر الأونصة، هل تريد التوصيل أم الاستلام من الفرع؟",
        "Can you deliver to Jeddah next week? And is there a guarantee?",
        "Yes — delivery to Jeddah takes 2–3 working days, and every bar carries our gold guarantee.",
    ];
    let history = (0..50)
        .map(|i| {
            let text = lines[i % lines.len()].to_owned();
            HistoryItem {
                id: MessageId(uuid::Uuid::new_v4()),
                seq: i as i64 + 1,
                role: if i % 2 == 0 {
                    Speaker::Contact
                } else {
                    Speaker::Agent
                },
                tokens: counter.map(|c| (c.count(&text), c.encoding().to_owned())),
                text,
            }
        })
        .collect();
    let mut input =
        runtime::bench::sample_input(runtime::AgentKind::Sales, "طيب كم المدة للتوصيل للرياض؟");
    input
        .contact
        .as_mut()
        .expect("sample_input has a contact")
        .name = Some("محمد".into());
    input.history = history;
    input
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

fn main() {
    let iterations = runtime::bench::arg("--iterations", 20_000usize);
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../prompts");
    let prompts = Arc::new(PromptStore::load(std::path::Path::new(dir)).expect("prompts"));
    // No request is sent: only the counter and window of the provider are used.
    let provider = OpenAiProvider::new(
        "http://127.0.0.1:9/v1",
        "",
        "gpt-4o-mini",
        ProviderConfig::default(),
    );
    let llm = Llm::new(Arc::new(provider), None, PriceTable::default());
    let agent = LlmAgent::new(runtime::AgentKind::Sales, prompts, Ok(llm.clone()));
    let counter = llm.counter("gpt-4o-mini");
    for (label, turn) in [
        ("stored counts", input(Some(counter.as_ref()))),
        ("nothing stored", input(None)),
    ] {
        for _ in 0..200 {
            let _ = agent.context(&llm, &turn).unwrap();
        }
        let mut times = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let t = Instant::now();
            let (system, messages, tools) = agent.context(&llm, &turn).unwrap();
            times.push(t.elapsed());
            assert!(!system.is_empty() && messages.len() == 51 && !tools.is_empty());
        }
        times.sort();
        println!(
            "context assembly, 50-message history, {label}: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs ({iterations} turns)",
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            percentile(&times, 1.0)
        );
    }
}
