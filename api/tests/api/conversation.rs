//! The conversation runtime end to end: a signed WhatsApp message in, an agent turn against an
//! OpenAI-compatible stand-in, the reply out through the outbox to a Graph API stand-in — exactly
//! once, in order, coalesced, superseded, retried, recovered after a crash.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use api::testkit::graph::FakeGraph;
use api::testkit::llm::{FakeLlm, Reply};
use runtime::TenantId;
use runtime::actors::{Runtime, RuntimeParts};
use runtime::db::begin_tenant;
use runtime::turn::{TurnEngine, TurnError, TurnInput, TurnOutcome};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};

const PNID: &str = "106540352242922";
const TOKEN: &str = "EAAG-tenant-token";

pub(crate) struct Harness {
    pub(crate) app: TestApp,
    pub(crate) llm: FakeLlm,
    pub(crate) graph: FakeGraph,
    pub(crate) tenant: TenantId,
}

/// The whole server with the runtime, fast timers, a tenant owning PNID, and both stand-ins.
async fn harness() -> Harness {
    harness_with(|_| {}).await
}

async fn harness_with(adjust: impl FnOnce(&mut RuntimeParts) + 'static) -> Harness {
    harness_full(|_| {}, adjust).await
}

/// The harness with settings of the test's own (a context window, prices, …).
pub(crate) async fn harness_full(
    configure: impl FnOnce(&mut runtime::Settings),
    adjust: impl FnOnce(&mut RuntimeParts) + 'static,
) -> Harness {
    let llm = FakeLlm::start().await;
    // Echo every new user message, so a reply shows which messages its turn covered.
    llm.respond_with(|req| Reply::Text(format!("رد: {}", new_user_texts(req).join(" | "))));
    let graph = FakeGraph::start().await;
    let (llm_url, graph_url) = (llm.url(), graph.url());
    let app = spawn_app_with(
        move |settings| {
            settings.llm_base_url = Some(llm_url);
            settings.whatsapp_graph_url = graph_url;
            configure(settings);
        },
        move |parts| {
            parts.config.debounce = Duration::from_millis(150);
            parts.config.retry_delay = Duration::from_millis(100);
            parts.config.outbox.base_backoff = Duration::from_millis(50);
            parts.config.outbox.poll_interval = Duration::from_millis(100);
            // The background agents take up CRM events only in the tests that ask for them
            // (`background.rs` sets a short poll): elsewhere the scripted model sees only the
            // conversation it plays.
            parts.config.events_poll = Duration::from_secs(24 * 3600);
            adjust(parts);
        },
    )
    .await;
    let tenant = tenant_with_number(&app).await;
    Harness {
        app,
        llm,
        graph,
        tenant,
    }
}

/// A tenant that owns the WhatsApp number PNID, with the token TOKEN.
async fn tenant_with_number(app: &TestApp) -> TenantId {
    tenant_owning(app, "riyadh-gold", PNID).await
}

/// A tenant that owns the WhatsApp number `pnid`, with the token TOKEN.
pub(crate) async fn tenant_owning(app: &TestApp, slug: &str, pnid: &str) -> TenantId {
    let tenant = app.test_db.tenant(slug).await;
    let mut tx = begin_tenant(&app.test_db.db().app, tenant).await.unwrap();
    api::repo::channels::add(
        &mut tx,
        "whatsapp",
        pnid,
        None,
        &json!({"access_token": TOKEN}),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    tenant
}

/// The user messages after the last assistant message: what the turn answers.
pub(crate) fn new_user_texts(request: &Value) -> Vec<String> {
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let start = messages
        .iter()
        .rposition(|m| m["role"] == "assistant")
        .map_or(0, |i| i + 1);
    messages[start..]
        .iter()
        .filter(|m| m["role"] == "user")
        .filter_map(|m| m["content"].as_str().map(str::to_owned))
        .collect()
}

/// A contact with the WhatsApp number `phone` (digits) and a qualified lead, made through the
/// REST API as a rep would: its conversation goes to the sales agent. Returns the lead's id.
pub(crate) async fn qualified_lead(h: &Harness, phone: &str, name: &str) -> String {
    let token = h.app.token(h.tenant, api::auth::Role::SalesManager);
    let contact = json!({"display_name": name, "identities": [{"kind": "phone", "value": format!("+{phone}")}]});
    let r = h
        .app
        .send("post", "/api/v1/contacts", Some(&token), Some(&contact))
        .await;
    assert_eq!(r.status(), 201);
    let contact: Value = r.json().await.unwrap();
    let lead = json!({"contact_id": contact["id"]});
    let r = h
        .app
        .send("post", "/api/v1/leads", Some(&token), Some(&lead))
        .await;
    assert_eq!(r.status(), 201);
    let lead: Value = r.json().await.unwrap();
    let id = lead["id"].as_str().unwrap().to_owned();
    for status in ["contacted", "qualified"] {
        let r = h
            .app
            .send(
                "patch",
                &format!("/api/v1/leads/{id}"),
                Some(&token),
                Some(&json!({"status": status})),
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    id
}

pub(crate) fn text(id: &str, from: &str, body: &str) -> Value {
    json!({"from": from, "id": id, "timestamp": "1749416383", "type": "text", "text": {"body": body}})
}

pub(crate) fn notification(messages: &[Value]) -> Vec<u8> {
    notification_to(PNID, messages)
}

/// A signed-payload body for messages to the business number `pnid`.
pub(crate) fn notification_to(pnid: &str, messages: &[Value]) -> Vec<u8> {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{"field": "messages",
        "value": {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550783881", "phone_number_id": pnid},
                  "messages": messages}}]}]})
    .to_string()
    .into_bytes()
}

pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// Inbound messages no turn has processed yet.
const UNPROCESSED: &str =
    "SELECT count(*) FROM messages WHERE direction = 'inbound' AND processed_at IS NULL";

/// Waits until the count `sql` returns satisfies `done`, failing with `what` after WAIT.
pub(crate) async fn wait_for_count(
    app: &TestApp,
    sql: &str,
    done: impl Fn(i64) -> bool,
    what: &str,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done(app.count(sql).await) {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits a little longer than any timer in play, so that a second reply would have shown up.
/// A negative window: after the awaited sends, how long nothing more may arrive for a test to
/// conclude that nothing was sent twice. Sends here take milliseconds and the test runtime's
/// retries come within a second; 2 s leaves room for a loaded 2-core machine.
const QUIET: Duration = Duration::from_secs(2);

/// Waits out [`QUIET`]: what was going to be sent twice has been by then.
async fn settle() {
    tokio::time::sleep(QUIET).await;
}

/// A signed Arabic message gets exactly one reply, to the right number and recipient, with the
/// tenant's token, byte-exact, and one audit row naming agent, prompt version and tokens.
#[tokio::test]
async fn a_message_gets_exactly_one_reply_and_one_audit_row() {
    let h = harness().await;
    let arabic = "السلام عليكم، هل الذهب عيار ٢١ متوفر؟";
    assert_eq!(
        h.app
            .post_whatsapp(&notification(&[text("wamid.1", "966500000001", arabic)]))
            .await
            .status(),
        200
    );
    let sent = h.graph.wait_for_delivered(1, WAIT).await;
    settle().await;
    let sent_now = h.graph.delivered();
    assert_eq!(sent_now.len(), 1, "{sent_now:?}");
    let s = &sent[0];
    assert_eq!(s.phone_number_id, PNID);
    assert_eq!(s.token.as_deref(), Some(TOKEN));
    assert_eq!(s.body["to"], "966500000001");
    assert_eq!(s.body["context"]["message_id"], "wamid.1");
    assert_eq!(
        s.body["text"]["body"].as_str().unwrap().as_bytes(),
        format!("رد: {arabic}").as_bytes()
    );

    let (agent, version, tokens_in, tokens_out, model): (String, String, i32, i32, String) =
        sqlx::query_as(
            "SELECT agent, prompt_version, tokens_in, tokens_out, model FROM ai_conversations",
        )
        .fetch_one(&h.app.test_db.db().admin)
        .await
        .unwrap();
    assert_eq!(agent, "intake", "a new contact starts with intake");
    assert_eq!(version.len(), 64);
    assert!(tokens_in > 0 && tokens_out > 0);
    assert!(!model.is_empty());
    assert_eq!(
        h.app.count("SELECT count(*) FROM ai_conversations").await,
        1
    );
    // The system prompt was rendered from prompts/sales.md with the tenant's name.
    let request = &h.llm.requests()[0];
    assert!(
        request["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("Test tenant")
    );
    // The outbound row records the provider's id and the sent status.
    let (status, provider_id): (String, String) = sqlx::query_as(
        "SELECT status, provider_message_id FROM messages WHERE direction = 'outbound'",
    )
    .fetch_one(&h.app.test_db.db().admin)
    .await
    .unwrap();
    assert_eq!(status, "sent");
    assert_eq!(Some(provider_id), s.wamid.clone());
    assert_eq!(h.app.count(UNPROCESSED).await, 0);
}

/// 20 concurrent deliveries of one notification: one stored message, one turn, one reply.
#[tokio::test]
async fn concurrent_duplicates_get_one_reply() {
    let h = harness().await;
    let body = notification(&[text("wamid.dup", "966500000002", "مرحبا")]);
    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (client, url) = (h.app.client.clone(), h.app.url("/webhooks/whatsapp"));
        let signature =
            channels::whatsapp::sign(crate::helpers::WHATSAPP_APP_SECRET.as_bytes(), &body);
        let body = body.clone();
        sends.spawn(async move {
            client
                .post(url)
                .header("x-hub-signature-256", signature)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    while let Some(status) = sends.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    h.graph.wait_for_delivered(1, WAIT).await;
    settle().await;
    assert_eq!(h.graph.delivered().len(), 1);
    assert_eq!(h.llm.requests().len(), 1);
    assert_eq!(
        h.app
            .count("SELECT count(*) FROM messages WHERE direction = 'inbound'")
            .await,
        1
    );
}

/// Two entries with two messages each from four contacts: four turns, four replies, each to its
/// own contact.
#[tokio::test]
async fn four_contacts_in_one_notification_get_four_replies() {
    let h = harness().await;
    let value = |msgs: Vec<Value>| json!({"metadata": {"phone_number_id": PNID}, "messages": msgs});
    let body = json!({"object": "whatsapp_business_account", "entry": [
        {"id": "1", "changes": [{"field": "messages", "value": value(vec![text("a", "9661", "أ"), text("b", "9662", "ب")])}]},
        {"id": "2", "changes": [{"field": "messages", "value": value(vec![text("c", "9663", "ت"), text("d", "9664", "ث")])}]}
    ]});
    assert_eq!(
        h.app
            .post_whatsapp(body.to_string().as_bytes())
            .await
            .status(),
        200
    );
    let sent = h.graph.wait_for_delivered(4, WAIT).await;
    settle().await;
    assert_eq!(h.graph.delivered().len(), 4);
    let mut pairs: Vec<(String, String)> = sent
        .iter()
        .map(|s| {
            (
                s.body["to"].as_str().unwrap().to_owned(),
                s.body["text"]["body"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    pairs.sort();
    assert_eq!(
        pairs,
        [
            ("9661".into(), "رد: أ".into()),
            ("9662".into(), "رد: ب".into()),
            ("9663".into(), "رد: ت".into()),
            ("9664".into(), "رد: ث".into())
        ]
    );
    assert_eq!(
        h.app.count("SELECT count(*) FROM ai_conversations").await,
        4
    );
}

/// Three messages 50 ms apart are answered by one turn that sees all three.
#[tokio::test]
async fn a_burst_is_coalesced_into_one_turn() {
    let h = harness().await;
    for (i, word) in ["السلام عليكم", "عندي سؤال", "عن الأسعار"].iter().enumerate()
    {
        assert_eq!(
            h.app
                .post_whatsapp(&notification(&[text(
                    &format!("w{i}"),
                    "966500000003",
                    word
                )]))
                .await
                .status(),
            200
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sent = h.graph.wait_for_delivered(1, WAIT).await;
    settle().await;
    assert_eq!(h.graph.delivered().len(), 1);
    assert_eq!(h.llm.requests().len(), 1, "one turn");
    assert_eq!(
        sent[0].body["text"]["body"],
        "رد: السلام عليكم | عندي سؤال | عن الأسعار"
    );
}

/// A message arriving while a turn is generating cancels that generation; one reply covers both.
#[tokio::test]
async fn a_message_during_generation_supersedes_it() {
    let h = harness().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    h.llm.respond_with(move |req| {
        let reply = Reply::Text(format!("رد: {}", new_user_texts(req).join(" | ")));
        // The first generation is slow; the message that supersedes it arrives meanwhile.
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::Delayed(Duration::from_secs(2), Box::new(reply))
        } else {
            reply
        }
    });
    h.app
        .post_whatsapp(&notification(&[text("g1", "966500000004", "أريد سبيكة")]))
        .await;
    // Past the debounce: the first turn is generating now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the first generation started"
    );
    h.app
        .post_whatsapp(&notification(&[text("g2", "966500000004", "وزن ٥٠ جرام")]))
        .await;
    let sent = h.graph.wait_for_delivered(1, WAIT).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        h.graph.delivered().len(),
        1,
        "the stale generation sent nothing"
    );
    assert_eq!(sent[0].body["text"]["body"], "رد: أريد سبيكة | وزن ٥٠ جرام");
    assert_eq!(
        h.app.count("SELECT count(*) FROM ai_conversations").await,
        1
    );
}

/// Graph rate limiting (130429) twice, then success: delivered once after three attempts.
#[tokio::test]
async fn rate_limited_sends_are_retried_until_delivered() {
    let h = harness().await;
    h.graph.fail_next(400, 130_429, 2);
    h.app
        .post_whatsapp(&notification(&[text("r1", "966500000005", "مرحبا")]))
        .await;
    h.graph.wait_for_delivered(1, WAIT).await;
    settle().await;
    assert_eq!(h.graph.delivered().len(), 1);
    assert_eq!(h.graph.requests().len(), 3);
    let (state, attempts): (String, i32) = sqlx::query_as("SELECT state, attempts FROM outbox")
        .fetch_one(&h.app.test_db.db().admin)
        .await
        .unwrap();
    assert_eq!((state.as_str(), attempts), ("sent", 3));
}

/// 131047 (window closed) is recorded and not retried.
#[tokio::test]
async fn a_closed_window_is_recorded_and_not_retried() {
    let h = harness().await;
    h.graph.fail_next(400, 131_047, 1);
    h.app
        .post_whatsapp(&notification(&[text("c1", "966500000006", "مرحبا")]))
        .await;
    wait_for_count(
        &h.app,
        "SELECT count(*) FROM outbox WHERE state = 'window_closed'",
        |n| n > 0,
        "the outbox row was not marked window_closed",
    )
    .await;
    settle().await;
    assert_eq!(h.graph.requests().len(), 1, "not retried");
    assert_eq!(h.app.count("SELECT count(*) FROM messages WHERE direction = 'outbound' AND status = 'window_closed'").await, 1);
}

/// Messages committed while no runtime ran (the process died after the inbound commit) are
/// answered exactly once when a runtime starts, and not again by a second start.
#[tokio::test]
async fn unprocessed_messages_are_answered_once_after_a_restart() {
    let h = harness().await;
    // The server's runtime is stopped: the webhook still commits, nothing answers.
    h.app.runtime.as_ref().unwrap().shutdown().await;
    h.app
        .post_whatsapp(&notification(&[text(
            "x1",
            "966500000007",
            "هل أنتم هناك؟",
        )]))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.graph.requests().len(), 0);

    for _ in 0..2 {
        let runtime = Runtime::start(h.app.runtime_parts()).await.unwrap();
        h.graph.wait_for_delivered(1, WAIT).await;
        settle().await;
        runtime.shutdown().await;
    }
    assert_eq!(h.graph.delivered().len(), 1);
    assert_eq!(h.llm.requests().len(), 1);
}

/// An outbox row committed by a turn whose process died before sending is sent exactly once by
/// the next process, and not again by the one after.
#[tokio::test]
async fn a_committed_unsent_reply_is_sent_once_after_a_restart() {
    let h = harness().await;
    h.app.runtime.as_ref().unwrap().shutdown().await;
    h.app
        .post_whatsapp(&notification(&[text("y1", "966500000008", "أرسل العرض")]))
        .await;
    // Commit a turn's outcome directly, as a process would just before dying.
    let conversation: runtime::ConversationId = sqlx::query_scalar("SELECT id FROM conversations")
        .fetch_one(&h.app.test_db.db().admin)
        .await
        .unwrap();
    let input = runtime::turn::load_input(&h.app.test_db.db().app, h.tenant, conversation)
        .await
        .unwrap()
        .unwrap();
    let outcome = TurnOutcome {
        replies: vec!["تفضل العرض".into()],
        ..TurnOutcome::default()
    };
    // As the runtime commits it: claimed by the committing process (here for one second), which
    // died before sending. The next process sends it when the claim runs out.
    let applied = runtime::turn::apply(
        &h.app.test_db.db().app,
        &input,
        &outcome,
        |t| vec![t.to_owned()],
        Some(Duration::from_secs(1)),
        None,
    )
    .await
    .unwrap();
    assert_eq!(applied.claimed.len(), 1);
    assert_eq!(h.graph.requests().len(), 0);

    for _ in 0..2 {
        let runtime = Runtime::start(h.app.runtime_parts()).await.unwrap();
        h.graph.wait_for_delivered(1, WAIT).await;
        settle().await;
        runtime.shutdown().await;
    }
    let delivered = h.graph.delivered();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].body["text"]["body"], "تفضل العرض");
    assert_eq!(
        h.llm.requests().len(),
        0,
        "the committed turn was not rerun"
    );
}

/// An engine that panics on messages containing "PANIC" the first `panics` times it sees them.
struct Flaky {
    inner: Arc<dyn TurnEngine>,
    panics: usize,
    seen: AtomicUsize,
}

impl TurnEngine for Flaky {
    fn run(
        &self,
        input: TurnInput,
    ) -> Pin<Box<dyn Future<Output = Result<TurnOutcome, TurnError>> + Send>> {
        if input.new_messages.iter().any(|m| m.text.contains("PANIC"))
            && self.seen.fetch_add(1, Ordering::SeqCst) < self.panics
        {
            panic!("injected failure");
        }
        self.inner.run(input)
    }
}

fn flaky(panics: usize) -> impl FnOnce(&mut RuntimeParts) + 'static {
    move |parts| {
        let (kind, inner) = parts.engines.remove(0);
        parts.engines.push((
            kind,
            Arc::new(Flaky {
                inner,
                panics,
                seen: AtomicUsize::new(0),
            }),
        ));
    }
}

/// A conversation whose turn crashes once is restarted and answers.
#[tokio::test]
async fn a_crashed_conversation_restarts_and_carries_on() {
    let h = harness_with(flaky(1)).await;
    h.app
        .post_whatsapp(&notification(&[text("p1", "966500000009", "PANIC once")]))
        .await;
    let sent = h.graph.wait_for_delivered(1, WAIT).await;
    settle().await;
    assert_eq!(h.graph.delivered().len(), 1);
    assert_eq!(sent[0].body["text"]["body"], "رد: PANIC once");
    assert_eq!(h.app.count("SELECT count(*) FROM dead_letters").await, 0);
}

/// A message that crashes its conversation three times goes to dead letters, the conversation is
/// flagged for a human, nothing is sent, and the next message is still answered... by no agent,
/// since a human now owns it.
#[tokio::test]
async fn a_message_that_crashes_three_times_is_dead_lettered() {
    let h = harness_with(flaky(usize::MAX)).await;
    h.app
        .post_whatsapp(&notification(&[text("p2", "966500000010", "PANIC always")]))
        .await;
    wait_for_count(
        &h.app,
        "SELECT count(*) FROM dead_letters",
        |n| n > 0,
        "no dead letter",
    )
    .await;
    settle().await;
    let (attempts, reason): (i32, String) =
        sqlx::query_as("SELECT attempts, reason FROM dead_letters")
            .fetch_one(&h.app.test_db.db().admin)
            .await
            .unwrap();
    assert_eq!(attempts, 3);
    assert!(reason.contains("crashed"), "{reason}");
    assert_eq!(
        h.app
            .count("SELECT count(*) FROM conversations WHERE needs_human AND status = 'escalated'")
            .await,
        1
    );
    assert_eq!(h.graph.requests().len(), 0);
    assert_eq!(h.app.count(UNPROCESSED).await, 0);
}

/// An idle conversation actor is passivated (no live actor), and the next message reactivates
/// it with its history from PostgreSQL.
#[tokio::test]
async fn idle_conversations_are_passivated_and_reactivated() {
    let h = harness_with(|parts| parts.config.idle_timeout = Duration::from_millis(200)).await;
    let runtime = h.app.runtime.clone().unwrap();
    h.app
        .post_whatsapp(&notification(&[text("i1", "966500000011", "أول رسالة")]))
        .await;
    h.graph.wait_for_delivered(1, WAIT).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while runtime.live_conversations().await.unwrap() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "never passivated");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.app
        .post_whatsapp(&notification(&[text("i2", "966500000011", "ثاني رسالة")]))
        .await;
    let sent = h.graph.wait_for_delivered(2, WAIT).await;
    assert_eq!(sent[1].body["text"]["body"], "رد: ثاني رسالة");
    // The reactivated actor's turn saw the earlier exchange as history.
    let second = &h.llm.requests()[1];
    let contents: Vec<&str> = second["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert!(
        contents.contains(&"أول رسالة") && contents.contains(&"رد: أول رسالة"),
        "{contents:?}"
    );
}

/// Without an LLM configured, messages are neither failed nor dead-lettered: they wait in
/// PostgreSQL, and a start with an LLM answers them.
#[tokio::test]
async fn turns_wait_without_an_llm() {
    let graph = FakeGraph::start().await;
    let graph_url = graph.url();
    let app = spawn_app_with(
        move |settings| settings.whatsapp_graph_url = graph_url,
        |parts| parts.config.debounce = Duration::from_millis(50),
    )
    .await;
    tenant_with_number(&app).await;

    app.post_whatsapp(&notification(&[text("n1", "966500000012", "هل من أحد؟")]))
        .await;
    settle().await;
    assert_eq!(app.count("SELECT count(*) FROM dead_letters").await, 0);
    assert_eq!(app.count(UNPROCESSED).await, 1);
    assert_eq!(
        app.count("SELECT count(*) FROM conversations WHERE needs_human")
            .await,
        0
    );
    assert!(graph.requests().is_empty());
    app.runtime.as_ref().unwrap().shutdown().await;

    // The next start, now with an LLM.
    let llm = FakeLlm::start().await;
    let (llm_url, graph_url) = (llm.url(), graph.url());
    let settings = runtime::Settings::from_lookup(|key| match key {
        "WASIT_PROMPTS_DIR" => Some(concat!(env!("CARGO_MANIFEST_DIR"), "/../prompts").to_owned()),
        "LLM_BASE_URL" => Some(llm_url.clone()),
        "WHATSAPP_GRAPH_URL" => Some(graph_url.clone()),
        _ => None,
    })
    .unwrap();
    let parts = api::wiring::runtime_parts(&settings, app.test_db.db().app.clone(), None)
        .await
        .unwrap();
    let runtime = Runtime::start(parts).await.unwrap();
    let sent = graph.wait_for_delivered(1, WAIT).await;
    runtime.shutdown().await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body["text"]["body"], "رد: هل من أحد؟");
}

/// An escalation keyword (written with diacritics) hands the conversation to a human: that turn
/// still answers, so the contact is kept informed; later messages run no agent at all — no LLM
/// call, no reply — and wait for the rep.
#[tokio::test]
async fn an_escalated_conversation_gets_no_agent() {
    let h = harness().await;
    h.app
        .post_whatsapp(&notification(&[text(
            "e1",
            "966500000013",
            "أريد التحدث مع مُحامٍ الآن",
        )]))
        .await;
    // The intake agent's escalation rule fires without a model call; the escalation agent takes
    // over, tells the contact, and hands the conversation to the people.
    h.graph.wait_for_delivered(1, WAIT).await;
    wait_for_count(
        &h.app,
        "SELECT count(*) FROM conversations WHERE status = 'escalated' AND needs_human AND escalated_from = 'intake'",
        |n| n == 1,
        "the conversation escalated",
    )
    .await;
    h.app
        .post_whatsapp(&notification(&[text("e2", "966500000013", "هل من رد؟")]))
        .await;
    wait_for_count(
        &h.app,
        UNPROCESSED,
        |n| n == 0,
        "the second message was never handed over",
    )
    .await;
    settle().await;
    assert_eq!(
        h.graph.delivered().len(),
        1,
        "no agent reply after escalation"
    );
    assert_eq!(
        h.llm.requests().len(),
        1,
        "one LLM call, the escalation agent's"
    );
    let agents: Vec<String> =
        sqlx::query_scalar("SELECT agent FROM ai_conversations ORDER BY turn_seq")
            .fetch_all(&h.app.test_db.db().admin)
            .await
            .unwrap();
    assert_eq!(agents, ["intake", "escalation"]);
}

/// A message committed but never delivered to its actor (a lost delivery) is found by the
/// periodic redelivery and answered once.
#[tokio::test]
async fn lost_deliveries_are_found_again() {
    let h = harness_with(|parts| {
        parts.config.recovery_interval = Duration::from_millis(200);
        parts.config.recovery_min_age = Duration::ZERO;
    })
    .await;
    // Store without delivering, as a webhook whose delivery was lost would.
    let (batches, rejects) = channels::whatsapp::parse_notification(&notification(&[text(
        "l1",
        "966500000014",
        "هل وصلت رسالتي؟",
    )]))
    .unwrap();
    let outcome = runtime::inbox::store(&h.app.test_db.db().app, batches, rejects)
        .await
        .unwrap();
    assert_eq!(outcome.accepted.len(), 1);
    let sent = h.graph.wait_for_delivered(1, WAIT).await;
    settle().await;
    assert_eq!(h.graph.delivered().len(), 1, "redelivered more than once?");
    assert_eq!(sent[0].body["text"]["body"], "رد: هل وصلت رسالتي؟");
    assert_eq!(h.llm.requests().len(), 1);
}

/// A reply longer than WhatsApp's 4096 characters goes out in parts, in order, each within the
/// limit.
#[tokio::test]
async fn a_long_reply_is_split_and_sent_in_order() {
    let h = harness().await;
    let sentence = "سعر غرام الذهب عيار ٢١ اليوم مستقر. ";
    let long: String = (1..=300).map(|i| format!("[{i}] {sentence}")).collect();
    let expected = long.clone();
    h.llm.respond_with(move |_| Reply::Text(expected.clone()));
    h.app
        .post_whatsapp(&notification(&[text(
            "long1",
            "966500000015",
            "أرسل التفاصيل كاملة",
        )]))
        .await;
    let parts = channels::whatsapp::split_text(&long, channels::whatsapp::MAX_TEXT_CHARS).len();
    assert!(parts >= 3, "{parts}");
    let sent = h
        .graph
        .wait_for_delivered(parts, Duration::from_secs(20))
        .await;
    assert_eq!(sent.len(), parts);
    let bodies: Vec<&str> = sent
        .iter()
        .map(|s| s.body["text"]["body"].as_str().unwrap())
        .collect();
    assert!(
        bodies
            .iter()
            .all(|b| b.chars().count() <= channels::whatsapp::MAX_TEXT_CHARS)
    );
    // Every numbered sentence, read across the parts in the order they arrived: 1..=300.
    let numbers: Vec<u32> = bodies
        .iter()
        .flat_map(|b| {
            b.split('[')
                .skip(1)
                .map(|x| x.split(']').next().unwrap().parse::<u32>().unwrap())
        })
        .collect();
    assert_eq!(
        numbers,
        (1..=300).collect::<Vec<_>>(),
        "parts out of order or lost"
    );
}

/// What the runtime did is readable through the REST API: the conversation in the list, its
/// messages in order (Arabic byte-exact, both directions), and its audited turn — the turns for
/// prompt engineers too, the messages not.
#[tokio::test]
async fn a_conversation_is_read_back_through_the_api() {
    let h = harness().await;
    let arabic = "هل يوجد ضمان ذهبي على السبائك؟";
    h.app
        .post_whatsapp(&notification(&[text(
            "wamid.read.1",
            "966500000031",
            arabic,
        )]))
        .await;
    h.graph.wait_for_delivered(1, WAIT).await;
    settle().await;
    let rep = h.app.token(h.tenant, api::auth::Role::SalesRep);
    let list = h
        .app
        .get_json("/api/v1/conversations?channel=whatsapp&status=open", &rep)
        .await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(
        items[0]["contact_name"],
        serde_json::Value::Null,
        "no profile in this payload"
    );
    assert_eq!(items[0]["turns"], 1);
    let none = h
        .app
        .get_json("/api/v1/conversations?needs_human=true", &rep)
        .await;
    assert_eq!(none["items"], serde_json::json!([]));

    let id = items[0]["id"].as_str().unwrap();
    let messages = h
        .app
        .get_json(&format!("/api/v1/conversations/{id}/messages"), &rep)
        .await;
    let messages = messages["items"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["direction"], "inbound");
    assert_eq!(
        messages[0]["body"].as_str().unwrap().as_bytes(),
        arabic.as_bytes()
    );
    assert!(messages[0]["processed_at"].is_string());
    assert_eq!(messages[1]["direction"], "outbound");
    assert_eq!(messages[1]["body"], format!("رد: {arabic}"));
    assert!(messages[0]["seq"].as_i64() < messages[1]["seq"].as_i64());

    let engineer = h.app.token(h.tenant, api::auth::Role::PromptEngineer);
    let turns = h
        .app
        .get_json(&format!("/api/v1/conversations/{id}/turns"), &engineer)
        .await;
    let turn = &turns["items"][0];
    assert_eq!(turn["turn_seq"], 1);
    assert_eq!(turn["agent"], "intake");
    assert_eq!(turn["prompt_version"].as_str().unwrap().len(), 64);
    assert!(turn["tokens_in"].as_i64().unwrap() > 0);
    let r = h
        .app
        .get(
            &format!("/api/v1/conversations/{id}/messages"),
            Some(&engineer),
        )
        .await;
    assert_eq!(
        r.status(),
        403,
        "prompt engineers read turns, not customers' messages"
    );
}

/// An escalation notifies, in its own transaction, everyone who works conversations (admins,
/// managers, reps; not prompt engineers, not disabled users); each reads and marks only their own.
#[tokio::test]
async fn an_escalation_notifies_the_people_who_can_take_it() {
    use api::auth::Role;
    let h = harness().await;
    let rep = h.app.user_token(h.tenant, Role::SalesRep).await;
    let manager = h.app.user_token(h.tenant, Role::SalesManager).await;
    let engineer = h.app.user_token(h.tenant, Role::PromptEngineer).await;
    let gone = h
        .app
        .test_db
        .user(
            h.tenant,
            "gone@example.com",
            Role::SalesRep,
            "long enough password",
        )
        .await;
    sqlx::query("UPDATE users SET disabled_at = now() WHERE id = $1")
        .bind(gone.0)
        .execute(&h.app.test_db.db().admin)
        .await
        .unwrap();
    h.app
        .post_whatsapp(&notification(&[text(
            "n1",
            "966500000041",
            "أريد التحدث مع مُحامٍ الآن",
        )]))
        .await;
    wait_for_count(
        &h.app,
        "SELECT count(*) FROM notifications",
        |n| n == 2,
        "the escalation's notifications",
    )
    .await;
    let conversation: uuid::Uuid = sqlx::query_scalar("SELECT id FROM conversations")
        .fetch_one(&h.app.test_db.db().admin)
        .await
        .unwrap();

    let mine = h
        .app
        .get_json("/api/v1/notifications?unread=true", &rep)
        .await;
    let items = mine["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["kind"], "conversation_escalated");
    assert_eq!(items[0]["title"], "محادثة تحتاج إلى موظف");
    assert_eq!(
        items[0]["data"]["conversation_id"],
        conversation.to_string()
    );
    let engineers = h.app.get_json("/api/v1/notifications", &engineer).await;
    assert_eq!(engineers["items"], serde_json::json!([]));

    let path = format!("/api/v1/notifications/{}", items[0]["id"].as_str().unwrap());
    let read = serde_json::json!({"read": true});
    let r = h
        .app
        .send("patch", &path, Some(&manager), Some(&read))
        .await;
    assert_eq!(r.status(), 404, "another user's notification is not found");
    let r = h.app.send("patch", &path, Some(&rep), Some(&read)).await;
    let marked: Value = r.json().await.unwrap();
    assert!(marked["read_at"].is_string());
    let unread = h
        .app
        .get_json("/api/v1/notifications?unread=true", &rep)
        .await;
    assert_eq!(unread["items"], serde_json::json!([]));
    let managers = h
        .app
        .get_json("/api/v1/notifications?unread=true", &manager)
        .await;
    assert_eq!(
        managers["items"].as_array().unwrap().len(),
        1,
        "each user reads their own"
    );
}
