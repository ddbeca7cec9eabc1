//! The LLM layer inside real turns: the context fits the model's window (history trimmed oldest
//! first into a rolling summary, token counts stored once per message), per-tenant budgets, and a
//! model outage that ends in an apology and a human instead of a lost message.

use std::time::Duration;

use api::auth::Role;
use api::testkit::llm::Reply;
use runtime::llm::tokens::TiktokenCounter;
use serde_json::{Value, json};

use crate::conversation::{
    WAIT, harness_full, new_user_texts, notification, notification_to, tenant_owning, text,
    wait_for_count,
};

const SUMMARY_MARKER: &str = "running summary";

fn is_summary_request(req: &Value) -> bool {
    req["messages"][0]["content"]
        .as_str()
        .is_some_and(|s| s.contains(SUMMARY_MARKER))
}

/// A long Arabic message, about `words` words.
fn long_message(n: usize, words: usize) -> String {
    let mut s = format!("رسالة رقم {n}: ");
    for i in 0..words {
        s.push_str(["أريد ", "سبيكة ", "ذهب ", "عيار ", "٢٤ ", "بوزن ", "كيلو "][i % 7]);
    }
    s
}

/// With a small window, the history overflows after a few turns: the oldest messages are folded
/// into a rolling summary (one model call), the summary is kept on the conversation, and the
/// next request carries the summary instead of those messages. Every message's token count is
/// stored once, equal to the model encoding's exact count of its text.
#[tokio::test]
async fn history_beyond_the_window_becomes_a_rolling_summary() {
    let h = harness_full(
        |s| s.llm_context_window = Some(2_000),
        |parts| parts.config.debounce = Duration::from_millis(50),
    )
    .await;
    h.llm.respond_with(|req| {
        if is_summary_request(req) {
            Reply::Text("ملخص: العميل يريد سبيكة ذهب عيار ٢٤".into())
        } else {
            Reply::Text(format!("رد قصير على {}", new_user_texts(req).len()))
        }
    });
    let mut summarised_at = None;
    for n in 1..=8 {
        h.app
            .post_whatsapp(&notification(&[text(
                &format!("w{n}"),
                "966500000010",
                &long_message(n, 120),
            )]))
            .await;
        h.graph.wait_for_delivered(n, WAIT).await;
        if summarised_at.is_none() && h.llm.requests().iter().any(is_summary_request) {
            summarised_at = Some(n);
        }
    }
    let summarised_at = summarised_at.expect("the history outgrew the window: a summary was made");
    assert!(
        summarised_at > 1,
        "no summary while everything fits (made at turn {summarised_at})"
    );

    let requests = h.llm.requests();
    let first_summary = requests.iter().find(|r| is_summary_request(r)).unwrap();
    assert!(
        first_summary["messages"][1]["content"]
            .as_str()
            .unwrap()
            .contains("رسالة رقم 1:"),
        "the oldest message is what gets summarised first"
    );
    let (summary, through): (Option<String>, Option<i64>) =
        sqlx::query_as("SELECT summary, summary_through_seq FROM conversations")
            .fetch_one(&h.app.test_db.db().admin)
            .await
            .unwrap();
    assert_eq!(
        summary.as_deref(),
        Some("ملخص: العميل يريد سبيكة ذهب عيار ٢٤")
    );
    assert!(through.is_some());

    // The last answer's request: the summary in the system prompt, the first message gone, the
    // newest message there.
    let last = requests
        .iter()
        .rev()
        .find(|r| !is_summary_request(r))
        .unwrap();
    let system = last["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.contains("ملخص: العميل يريد سبيكة ذهب عيار ٢٤"),
        "{system}"
    );
    let texts: Vec<&str> = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert!(!texts.iter().any(|t| t.starts_with("رسالة رقم 1:")));
    assert!(texts.iter().any(|t| t.starts_with("رسالة رقم 8:")));

    // Counted once, exactly, with the model's encoding (gpt-4o-mini: o200k_base).
    let counter = TiktokenCounter::for_model("gpt-4o-mini");
    let rows: Vec<(String, Option<i32>, Option<String>)> = sqlx::query_as(
        "SELECT body, token_count, token_encoding FROM messages WHERE body IS NOT NULL ORDER BY seq",
    )
    .fetch_all(&h.app.test_db.db().admin)
    .await
    .unwrap();
    // The newest reply has not been seen by a turn yet; everything before it has.
    for (body, count, encoding) in &rows[..rows.len() - 1] {
        assert_eq!(encoding.as_deref(), Some("o200k_base"), "{body}");
        assert_eq!(*count, Some(counter.count(body) as i32), "{body}");
    }
}

/// A tenant at its daily token cap gets no model call: the contact gets a polite note, a human
/// takes over, and the tenant's admins are told once. Another tenant is unaffected. Usage is
/// visible through the analytics API and /metrics.
#[tokio::test]
async fn a_tenant_at_its_cap_is_handed_to_a_human_and_others_are_unaffected() {
    let h = harness_full(
        |s| s.llm_prices = Some("gpt-4o-mini=1000/2000".into()),
        |_| {},
    )
    .await;
    let other = tenant_owning(&h.app, "jeddah-gold", "222333444555").await;
    let admin = h.app.user_token(h.tenant, Role::Admin).await;
    // Caps are validated: bad values and unknown keys change nothing.
    for bad in [
        json!({"daily_tokens": -1}),
        json!({"daily_cost_usd": -0.5}),
        json!({"daly_tokens": 10}),
        json!({"agent_models": {"Sales Agent": "gpt-4o"}}),
    ] {
        let r = h
            .app
            .send("put", "/api/v1/settings/llm", Some(&admin), Some(&bad))
            .await;
        assert_eq!(r.status(), 422, "{bad}");
    }
    let r = h
        .app
        .send(
            "put",
            "/api/v1/settings/llm",
            Some(&admin),
            Some(&json!({"daily_tokens": 10})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let settings = h.app.get_json("/api/v1/settings/llm", &admin).await;
    assert_eq!(settings["daily_tokens"], 10);

    // The first turn is under the cap (nothing used yet) and spends more than it.
    h.app
        .post_whatsapp(&notification(&[text("c1", "966500000020", "السلام عليكم")]))
        .await;
    let sent = h.graph.wait_for_delivered(1, WAIT).await;
    assert_eq!(sent[0].body["text"]["body"], "رد: السلام عليكم");
    assert_eq!(h.llm.requests().len(), 1);

    // Now at the cap: no model call.
    h.app
        .post_whatsapp(&notification(&[text(
            "c2",
            "966500000020",
            "كم سعر السبيكة؟",
        )]))
        .await;
    let sent = h.graph.wait_for_delivered(2, WAIT).await;
    assert_eq!(
        sent[1].body["text"]["body"],
        agents::llm_agent::budget_message(runtime::turn::Language::Arabic)
    );
    assert_eq!(h.llm.requests().len(), 1, "no model call at the cap");
    let status: String = sqlx::query_scalar("SELECT status FROM conversations")
        .fetch_one(&h.app.test_db.db().admin)
        .await
        .unwrap();
    assert_eq!(status, "escalated");
    let notes: Vec<(String, String)> = sqlx::query_as(
        "SELECT n.kind, u.role FROM notifications n JOIN users u ON u.id = n.user_id WHERE n.kind = 'llm_budget_reached'",
    )
    .fetch_all(&h.app.test_db.db().admin)
    .await
    .unwrap();
    assert_eq!(
        notes,
        vec![("llm_budget_reached".to_owned(), "admin".to_owned())]
    );

    // The other tenant still talks to the model.
    h.app
        .post_whatsapp(&notification_to(
            "222333444555",
            &[text("d1", "966500000021", "مرحبا")],
        ))
        .await;
    let sent = h.graph.wait_for_delivered(3, WAIT).await;
    assert_eq!(sent[2].body["text"]["body"], "رد: مرحبا");
    assert_eq!(h.llm.requests().len(), 2);

    // Usage through the API: one call for this tenant, priced by LLM_PRICES.
    let usage = h.app.get_json("/api/v1/analytics/llm-usage", &admin).await;
    assert_eq!(usage["totals"]["calls"], 1, "{usage}");
    assert_eq!(usage["items"][0]["agent"], "intake");
    // The model that answered (a dated snapshot), priced as the model asked for.
    assert_eq!(usage["items"][0]["model"], "gpt-4o-mini-2024-07-18");
    let (tin, tout) = (
        usage["items"][0]["tokens_in"].as_i64().unwrap(),
        usage["items"][0]["tokens_out"].as_i64().unwrap(),
    );
    assert!(tin + tout > 10);
    // $1000 per million in, $2000 per million out: 1,000 and 2,000 micro-dollars per token.
    assert_eq!(usage["items"][0]["cost_micros"], tin * 1000 + tout * 2000);
    assert_eq!(usage["caps"]["daily_tokens"], 10);
    assert_eq!(usage["today"]["tokens"], tin + tout);
    let rep = h.app.user_token(h.tenant, Role::SalesRep).await;
    let forbidden = h.app.get("/api/v1/analytics/llm-usage", Some(&rep)).await;
    assert_eq!(forbidden.status(), 403);
    let other_admin = h.app.user_token(other, Role::Admin).await;
    let theirs = h
        .app
        .get_json("/api/v1/analytics/llm-usage", &other_admin)
        .await;
    assert_eq!(
        theirs["totals"]["calls"], 1,
        "each tenant sees only its own usage"
    );

    // Labels name tenants: only superadmins read it.
    assert_eq!(h.app.get("/metrics", None).await.status(), 401);
    assert_eq!(h.app.get("/metrics", Some(&admin)).await.status(), 403);
    let superadmin = h.app.user_token(h.tenant, Role::Superadmin).await;
    let metrics = h
        .app
        .get("/metrics", Some(&superadmin))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "wasit_llm_calls_total{tenant=\"riyadh-gold\",agent=\"intake\",model=\"gpt-4o-mini-2024-07-18\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("wasit_llm_calls_total{tenant=\"jeddah-gold\""));
    assert!(metrics.contains("# TYPE wasit_llm_cost_usd_total counter"));
}

/// The model is down for longer than every retry: the contact gets an apology in Arabic, the
/// conversation goes to a human, and the message is answered (processed with an outcome), not
/// lost or dead-lettered.
#[tokio::test]
async fn a_model_outage_past_the_retries_ends_in_an_apology_and_a_human() {
    let h = harness_full(
        |s| s.llm_timeout = Duration::from_secs(2),
        |parts| {
            parts.config.max_failures = 3;
            parts.config.retry_delay = Duration::from_millis(100);
        },
    )
    .await;
    h.app.user_token(h.tenant, Role::SalesRep).await;
    h.llm.respond_with(|_| Reply::Error(503));
    h.app
        .post_whatsapp(&notification(&[text(
            "o1",
            "966500000030",
            "هل الذهب متوفر؟",
        )]))
        .await;
    let sent = h.graph.wait_for_delivered(1, Duration::from_secs(60)).await;
    assert_eq!(
        sent[0].body["text"]["body"],
        runtime::turn::apology(runtime::turn::Language::Arabic)
    );
    assert!(h.llm.requests().len() >= 3, "the turn was retried first");
    wait_for_count(
        &h.app,
        "SELECT count(*) FROM conversations WHERE status = 'escalated' AND needs_human",
        |n| n == 1,
        "the conversation was escalated",
    )
    .await;
    assert_eq!(
        h.app
            .count(
                "SELECT count(*) FROM messages WHERE direction = 'inbound' AND processed_at IS NULL"
            )
            .await,
        0
    );
    assert_eq!(h.app.count("SELECT count(*) FROM dead_letters").await, 0);
    let audit: Value = sqlx::query_scalar("SELECT tool_calls FROM ai_conversations")
        .fetch_one(&h.app.test_db.db().admin)
        .await
        .unwrap();
    assert_eq!(audit[0]["fallback"], "model_unavailable");
    assert_eq!(
        h.app
            .count("SELECT count(*) FROM notifications WHERE kind = 'conversation_escalated'")
            .await,
        1
    );
}

/// With no `LLM_BASE_URL`, the embedded model answers a real WhatsApp turn, offline, through the
/// whole runtime (`scripts/test` fetches it and sets `WASIT_LOCAL_MODEL`).
#[tokio::test]
async fn the_embedded_model_answers_a_turn_offline() {
    let path = std::env::var_os("WASIT_LOCAL_MODEL")
        .map(std::path::PathBuf::from)
        .expect(
            "WASIT_LOCAL_MODEL is unset: run the suite with scripts/test, which fetches the model",
        );
    let h = harness_full(
        move |s| {
            s.llm_base_url = None;
            s.local_model = Some(path);
        },
        |_| {},
    )
    .await;
    h.app
        .post_whatsapp(&notification(&[text(
            "e1",
            "966500000040",
            "Hello! What is the capital of France?",
        )]))
        .await;
    let sent = h
        .graph
        .wait_for_delivered(1, Duration::from_secs(120))
        .await;
    let reply = sent[0].body["text"]["body"].as_str().unwrap_or_default();
    assert!(!reply.trim().is_empty());
    assert!(h.llm.requests().is_empty(), "no HTTP model was called");
    let (model, tokens_out): (String, i32) =
        sqlx::query_as("SELECT model, tokens_out FROM ai_conversations")
            .fetch_one(&h.app.test_db.db().admin)
            .await
            .unwrap();
    assert_eq!(model, local_model::MODEL_NAME);
    assert!(tokens_out > 0);
}
