//! The prompt files at turn time and at edit time, for every one of the eighteen agent kinds:
//!
//! - per turn: render the agent's prompt file with the turn's context and assemble the schemas of
//!   the tools it offers (target: ≤ 1 ms p99);
//! - per edit: from the write of a prompt file to the new version being the one turns read, with
//!   the watcher a running server uses (target: ≤ 1 s), and the cost of one poll of the directory.
//!
//! Not a pass/fail test: the figures go to docs/BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p agents --bench prompts -- [--iterations 20000] [--edits 40]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use agents::llm_agent::LlmAgent;
use agents::prompt::{PromptStore, RELOAD_INTERVAL};
use runtime::actions::{
    ActionContext, ActionError, ActionFuture, ActionHandler, Actions, ToolAction,
};
use runtime::turn::{HandoffNote, HistoryItem, LeadInfo, Speaker, TurnInput};
use runtime::{LeadId, MessageId};
use serde_json::{Value, json};

/// Offers every tool; never called (nothing here runs a tool).
struct EveryTool;

impl ActionHandler for EveryTool {
    fn supports(&self, _tool: &str) -> bool {
        true
    }
    fn apply<'a>(
        &'a self,
        _tx: &'a mut runtime::db::TenantTx,
        _ctx: ActionContext,
        _action: &'a ToolAction,
    ) -> ActionFuture<'a> {
        Box::pin(async { Err(ActionError::Refused("benchmark".into())) })
    }
    fn read<'a>(
        &'a self,
        _pool: &'a sqlx::PgPool,
        _ctx: ActionContext,
        _tool: &'a str,
        _arguments: &'a Value,
    ) -> ActionFuture<'a> {
        Box::pin(async { Err(ActionError::Refused("benchmark".into())) })
    }
}

fn input(agent: runtime::AgentKind) -> TurnInput {
    let history = (0..30)
        .map(|i| HistoryItem {
            id: MessageId(uuid::Uuid::new_v4()),
            seq: i,
            role: if i % 2 == 0 {
                Speaker::Contact
            } else {
                Speaker::Agent
            },
            text: format!("رسالة رقم {i} عن سبائك الذهب عيار ٢٤ والأسعار والتوصيل"),
            tokens: None,
        })
        .collect();
    let mut input = runtime::bench::sample_input(agent, "ممكن نحدد موعد لزيارة المعرض؟");
    input
        .contact
        .as_mut()
        .expect("sample_input has a contact")
        .name = Some("عبدالله".into());
    input.history = history;
    input.lead = Some(LeadInfo {
        id: LeadId(uuid::Uuid::new_v4()),
        status: "qualified".into(),
        score: Some(72),
        qualification: json!({"company": "مؤسسة النخبة", "need": "سبائك ١٠٠ غرام", "budget": "٢٠٠ ألف ريال"}),
    });
    input.handoff = Some(HandoffNote {
        from: "sales".into(),
        reason: "العميل يريد موعدًا".into(),
    });
    input.handoff_hops = 1;
    input
}

fn micros(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

fn millis(sorted: &[Duration], p: f64) -> f64 {
    micros(sorted, p) / 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let iterations = runtime::bench::arg("--iterations", 20_000usize);
    let edits = runtime::bench::arg("--edits", 40usize);
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../prompts");

    // Per turn, every kind.
    let store = Arc::new(PromptStore::load(std::path::Path::new(shipped)).expect("prompts"));
    let pool = sqlx::postgres::PgPoolOptions::new()
        .connect_lazy("postgres://127.0.0.1:9/none")
        .expect("a lazy pool");
    let actions = Actions {
        handler: Arc::new(EveryTool),
        pool,
    };
    let mut all = Vec::with_capacity(iterations * agents::catalog::AGENTS.len());
    let mut worst = (0.0, "");
    for spec in agents::catalog::AGENTS {
        let agent = LlmAgent::new(spec.kind, store.clone(), Err("no model".into()))
            .with_actions(actions.clone());
        let turn = input(spec.kind);
        let (_, tools) = agent.system_and_tools(&turn).unwrap();
        assert_eq!(
            tools.len(),
            spec.tools.len() - usize::from(spec.tools.contains(&"search_knowledge"))
        );
        let mut times = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let t = Instant::now();
            let (system, tools) = agent.system_and_tools(&turn).unwrap();
            times.push(t.elapsed());
            std::hint::black_box((system, tools));
        }
        times.sort();
        let p99 = micros(&times, 0.99);
        if p99 > worst.0 {
            worst = (p99, spec.kind.as_str());
        }
        all.extend(times);
    }
    all.sort();
    println!(
        "prompt render + tool schemas, 18 kinds × {iterations} turns: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs; slowest kind {} (p99 {:.1} µs)",
        micros(&all, 0.5),
        micros(&all, 0.99),
        micros(&all, 1.0),
        worst.1,
        worst.0
    );

    // Per edit: a copy of the prompts, watched as the server watches them.
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(shipped).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let store = Arc::new(PromptStore::load(dir.path()).unwrap());
    let mut polls = Vec::with_capacity(200);
    for _ in 0..200 {
        let t = Instant::now();
        assert!(store.refresh().is_empty());
        polls.push(t.elapsed());
    }
    polls.sort();
    println!(
        "one poll of 18 unchanged prompt files: p50 {:.1} µs, p99 {:.1} µs",
        micros(&polls, 0.5),
        micros(&polls, 0.99)
    );
    let watcher = store.watch(RELOAD_INTERVAL);
    let file = dir.path().join("sales.md");
    let original = std::fs::read_to_string(&file).unwrap();
    let mut visible = Vec::with_capacity(edits);
    for i in 0..edits {
        let before = store.current().get("", "sales").unwrap().version.clone();
        let t = Instant::now();
        std::fs::write(&file, format!("{original}\nنسخة {i}\n")).unwrap();
        while store.current().get("", "sales").unwrap().version == before {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        visible.push(t.elapsed());
        // Edits land at no particular moment of the watcher's cycle.
        tokio::time::sleep(Duration::from_millis(37 * (i as u64 % 7))).await;
    }
    watcher.abort();
    visible.sort();
    println!(
        "hot reload, write → next turn reads it ({edits} edits, poll every {} ms): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        RELOAD_INTERVAL.as_millis(),
        millis(&visible, 0.5),
        millis(&visible, 0.99),
        millis(&visible, 1.0)
    );
}
