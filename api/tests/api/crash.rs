//! A real `wasit serve` killed with SIGKILL: what it acknowledged is answered exactly once by the
//! next process. (The in-process variants in `conversation.rs` stop the runtime at chosen points;
//! this one gives the operating system the last word.)

use std::process::{Child, Command};
use std::time::Duration;

use api::testkit::graph::FakeGraph;
use api::testkit::llm::{FakeLlm, Reply};
use runtime::db::begin_tenant;
use serde_json::json;

use crate::helpers::{JWT_SECRET, TestDb, WHATSAPP_APP_SECRET, WHATSAPP_VERIFY_TOKEN};

const PNID: &str = "106540352242922";

fn serve(
    db_url: &str,
    data_dir: &std::path::Path,
    llm: &FakeLlm,
    graph: &FakeGraph,
) -> (Child, String) {
    api::testkit::spawn_serve(
        Command::new(env!("CARGO_BIN_EXE_wasit"))
            .env("DATABASE_URL", db_url)
            .env("WASIT_DATA_DIR", data_dir)
            .env("WASIT_HTTP_ADDR", "127.0.0.1:0")
            .env(
                "WASIT_PROMPTS_DIR",
                concat!(env!("CARGO_MANIFEST_DIR"), "/../prompts"),
            )
            .env("WASIT_JWT_SECRET", JWT_SECRET)
            .env("WHATSAPP_APP_SECRET", WHATSAPP_APP_SECRET)
            .env("WHATSAPP_VERIFY_TOKEN", WHATSAPP_VERIFY_TOKEN)
            .env("WHATSAPP_GRAPH_URL", graph.url())
            .env("LLM_BASE_URL", llm.url())
            .env("WASIT_DEBOUNCE_MS", "0")
            .env("RUST_LOG", "warn"),
    )
}

fn signal(child: &Child, sig: &str) {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success()
    );
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The first process acknowledges a message and dies (SIGKILL) while its turn is generating; the
/// second answers it once, and nothing is sent by the first.
#[tokio::test]
async fn a_killed_server_answers_what_it_acknowledged_exactly_once_after_a_restart() {
    runtime::http::install_tls_provider();
    let test_db = TestDb::new().await;
    let tenant = test_db.tenant("riyadh-gold").await;
    let mut tx = begin_tenant(&test_db.db().app, tenant).await.unwrap();
    api::repo::channels::add(
        &mut tx,
        "whatsapp",
        PNID,
        None,
        &json!({"access_token": "token"}),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let llm = FakeLlm::start().await;
    // The first process's model is slow: its turn is mid-generation when the process dies.
    llm.respond_with(|_| {
        Reply::Delayed(
            Duration::from_secs(600),
            Box::new(Reply::Text("late".into())),
        )
    });
    let graph = FakeGraph::start().await;
    let data_dir = tempfile::tempdir().unwrap();
    let (mut first, base) = serve(&test_db.url, data_dir.path(), &llm, &graph);

    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550000001", "phone_number_id": PNID},
        "contacts": [{"profile": {"name": "سارة"}, "wa_id": "966500000042"}],
        "messages": [{"from": "966500000042", "id": "wamid.crash.1", "timestamp": "1749416383", "type": "text",
                      "text": {"body": "كم سعر سبيكة الذهب؟"}}]}}]}]})
    .to_string()
    .into_bytes();
    let response = reqwest::Client::new()
        .post(format!("{base}/webhooks/whatsapp"))
        .header("content-type", "application/json")
        .header(
            "x-hub-signature-256",
            channels::whatsapp::sign(WHATSAPP_APP_SECRET.as_bytes(), &body),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "acknowledged");
    wait_for("the first turn to reach the model", || {
        !llm.requests().is_empty()
    })
    .await;
    signal(&first, "-KILL");
    let _ = first.wait();
    assert!(graph.requests().is_empty(), "the dead process sent nothing");

    llm.respond_with(|_| Reply::Text("سعر السبيكة اليوم ٢٤٠ ريالاً للغرام".into()));
    let (mut second, _) = serve(&test_db.url, data_dir.path(), &llm, &graph);
    graph.wait_for_delivered(1, Duration::from_secs(30)).await;
    // Anything sent twice would arrive within this pause.
    tokio::time::sleep(Duration::from_secs(1)).await;
    signal(&second, "-TERM");
    let status = second.wait().unwrap();
    assert!(
        status.success(),
        "the second process exits cleanly: {status}"
    );

    let delivered = graph.delivered();
    assert_eq!(delivered.len(), 1, "exactly one reply");
    assert_eq!(delivered[0].body["to"], "966500000042");
    assert_eq!(
        delivered[0].body["text"]["body"],
        "سعر السبيكة اليوم ٢٤٠ ريالاً للغرام"
    );
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM ai_conversations")
        .fetch_one(&test_db.db().admin)
        .await
        .unwrap();
    assert_eq!(audited, 1, "one committed turn");
}
