//! The agents at work, end to end: real PostgreSQL, the scriptable OpenAI-compatible stand-in
//! playing each agent's model, the Meta stand-in receiving the replies, and the CRM effects read
//! back through the REST API.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use api::auth::Role;
use api::testkit::llm::Reply;
use runtime::actions::{ActionContext, ActionFuture, ActionHandler, ToolAction};
use serde_json::{Value, json};

use crate::conversation::{
    Harness, WAIT, harness_full, notification, qualified_lead, text, wait_for_count,
};

/// Which agent a request is for, from the first words of its rendered prompt file.
pub(crate) fn agent_of(req: &Value) -> &'static str {
    let system = system_of(req);
    let openings = [
        ("أنت موظف الاستقبال", "intake"),
        ("أنت مسؤول تأهيل العملاء", "qualifier"),
        ("أنت مساعد المبيعات", "sales"),
        ("أنت منسق المواعيد", "meeting_scheduler"),
        ("أنت مسؤول مطالبات الضمان", "guarantee"),
        ("أنت مسؤول التحويل إلى الموظفين", "escalation"),
        ("أنت مساعد المعرفة", "knowledge"),
        ("أنت مسؤول المتابعة", "follow_up"),
        ("أنت مختص معالجة الاعتراضات", "objection_handler"),
        ("أنت مسؤول استقطاب المسوقين", "affiliate_recruiter"),
        ("أنت مسؤول تهيئة المسوقين", "affiliate_onboarding"),
        ("أنت كاتب العروض", "proposal_writer"),
        ("أنت مدرب المسوقين", "affiliate_coach"),
        ("أنت مسؤول العمولات", "commission"),
        ("You score the leads", "scorer"),
        ("You assign the leads", "router"),
        ("You coach the sales team", "deal_coach"),
        ("You forecast revenue", "forecaster"),
    ];
    openings
        .iter()
        .find(|(opening, _)| system.starts_with(opening))
        .map_or_else(
            || panic!("a request for an unexpected agent: {system}"),
            |(_, k)| *k,
        )
}

/// The system prompt of a request.
pub(crate) fn system_of(req: &Value) -> &str {
    req["messages"][0]["content"].as_str().unwrap_or_default()
}

/// The result of the tool call the request ends with, if it ends with one.
pub(crate) fn tool_result(req: &Value) -> Option<Value> {
    let last = req["messages"].as_array()?.last()?;
    (last["role"] == "tool").then(|| serde_json::from_str(last["content"].as_str()?).ok())?
}

/// How many tool results the request carries (the rounds of this turn so far).
fn tool_rounds(req: &Value) -> usize {
    req["messages"]
        .as_array()
        .map_or(0, |m| m.iter().filter(|m| m["role"] == "tool").count())
}

/// The newest thing the contact said.
pub(crate) fn last_contact_text(req: &Value) -> String {
    req["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned()
}

pub(crate) fn call(name: &str, arguments: Value) -> (String, Value) {
    (name.to_owned(), arguments)
}

/// A copy of the shipped prompt files, to edit.
pub(crate) fn prompts_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../prompts");
    for entry in std::fs::read_dir(&shipped).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    dir
}

/// Edits the sales prompt file at `path` to mention a Ramadan offer («اذكر عرض رمضان»); returns
/// the edited text.
pub(crate) fn add_ramadan_offer(path: &std::path::Path) -> String {
    let original = std::fs::read_to_string(path).unwrap();
    let edited = original.replace(
        "Keep replies under 5 short sentences.",
        "Keep replies under 5 short sentences. اذكر عرض رمضان: خصم ٥٪ على المصنعية.",
    );
    assert_ne!(edited, original);
    std::fs::write(path, &edited).unwrap();
    edited
}

/// The contact at `phone` writes each of `says` on WhatsApp, waiting for each answer; returns
/// every text delivered to the contact so far.
async fn converse(h: &Harness, phone: &str, says: &[&str]) -> Vec<String> {
    let already = h.graph.delivered().len();
    for (i, said) in says.iter().enumerate() {
        let id = format!("{phone}-{}", already + i);
        h.app
            .post_whatsapp(&notification(&[text(&id, phone, said)]))
            .await;
        h.graph.wait_for_delivered(already + i + 1, WAIT).await;
    }
    h.graph
        .delivered()
        .iter()
        .map(|s| s.body["text"]["body"].as_str().unwrap().to_owned())
        .collect()
}

/// The id of the tenant's first pipeline stage whose `field` is `value` (e.g. `kind` `won`).
pub(crate) async fn stage_where(h: &Harness, token: &str, field: &str, value: &str) -> String {
    let stages = h.app.get_json("/api/v1/pipeline/stages", token).await;
    stages["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s[field] == value)
        .unwrap_or_else(|| panic!("a stage with {field} {value}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A manager (by `token`) approves `approval` (as listed by `GET /api/v1/approvals`).
pub(crate) async fn approve(h: &Harness, token: &str, approval: &Value) {
    let path = format!(
        "/api/v1/approvals/{}/decision",
        approval["id"].as_str().unwrap()
    );
    let r = h
        .app
        .send("post", &path, Some(token), Some(&json!({"approve": true})))
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

/// The tenant's first pending approval, as `GET /api/v1/approvals?status=pending` lists it.
pub(crate) async fn pending_approval(h: &Harness, token: &str) -> Value {
    let pending = h
        .app
        .get_json("/api/v1/approvals?status=pending", token)
        .await;
    pending["items"][0].clone()
}

/// Moves `deal` (as the REST API returned it) to the stage `stage_id`, as a rep would.
pub(crate) async fn move_deal(h: &Harness, token: &str, deal: &Value, stage_id: &str) {
    let r = h
        .app
        .send(
            "patch",
            &format!("/api/v1/deals/{}", deal["id"].as_str().unwrap()),
            Some(token),
            Some(&json!({ "stage_id": stage_id })),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

/// The tenant's most recent conversation and its audited turns, through the REST API.
pub(crate) async fn latest_conversation_turns(h: &Harness, token: &str) -> (Value, Value) {
    let conversations = h.app.get_json("/api/v1/conversations", token).await;
    let conversation = conversations["items"][0].clone();
    let turns = h
        .app
        .get_json(
            &format!(
                "/api/v1/conversations/{}/turns",
                conversation["id"].as_str().unwrap()
            ),
            token,
        )
        .await;
    (conversation, turns)
}

async fn harness() -> Harness {
    harness_full(|_| {}, |_| {}).await
}

/// A sales rep of the harness's tenant.
pub(crate) async fn sales_rep(h: &Harness) -> runtime::UserId {
    h.app
        .test_db
        .user(
            h.tenant,
            "rep@example.com",
            Role::SalesRep,
            "long enough password",
        )
        .await
}

/// A sales rep who works every day around the clock in Riyadh, so slots exist whenever the test
/// runs. Returns the rep's id.
async fn rep_with_hours(h: &Harness) -> runtime::UserId {
    let rep = sales_rep(h).await;
    let manager = h.app.token(h.tenant, Role::SalesManager);
    let hours: Vec<Value> = (1..=7)
        .map(|d| json!({"weekday": d, "starts": "00:00", "ends": "23:59"}))
        .collect();
    let r = h
        .app
        .send(
            "put",
            &format!("/api/v1/users/{}/working-hours", rep.0),
            Some(&manager),
            Some(&json!({"time_zone": "Asia/Riyadh", "hours": hours})),
        )
        .await;
    assert_eq!(r.status(), 200);
    rep
}

/// One Arabic conversation passes intake → qualifier → sales → meeting_scheduler: intake creates
/// the lead and hands off, the qualifier qualifies it and hands off, a request to meet is routed
/// to the meeting scheduler, which offers free slots and books one. Each agent answers with its
/// own prompt and sees the history; the lead, the contact and the rep's calendar show it all.
#[tokio::test]
async fn one_arabic_conversation_goes_from_intake_to_a_booked_meeting() {
    let h = harness().await;
    let rep = rep_with_hours(&h).await;
    let slot: Arc<Mutex<Option<String>>> = Arc::default();
    let chosen = slot.clone();
    h.llm.respond_with(move |req| {
        let said = last_contact_text(req);
        match (agent_of(req), tool_result(req)) {
            ("intake", None) => Reply::ToolCalls(vec![
                call("create_lead", json!({"name": "عبدالله", "company": "مؤسسة النخبة",
                    "need": "سبائك ذهب عيار ٢٤ للاستثمار", "territory": "الرياض"})),
                call("handoff", json!({"to_agent": "qualifier", "reason": "عميل جديد يريد سبائك للاستثمار"})),
            ]),
            ("qualifier", None) if said.contains("الميزانية") => Reply::ToolCalls(vec![
                call("set_qualification", json!({"qualified": true, "budget": "٢٠٠ ألف ريال",
                    "authority": "القرار له", "timeline": "خلال شهر", "reason": "الميزانية والقرار والتوقيت واضحة"})),
                call("handoff", json!({"to_agent": "sales", "reason": "عميل مؤهل"})),
            ]),
            ("qualifier", None) => {
                Reply::Text("أهلًا عبدالله! كم الميزانية التقريبية، ومتى تنوي الشراء؟".into())
            }
            ("sales", None) => Reply::Text(
                "ممتاز يا عبدالله، لدينا سبائك ١٠٠ غرام عيار ٢٤. هل تود زيارة معرضنا؟".into(),
            ),
            ("meeting_scheduler", None) if said.contains("الأول") => {
                let starts_at = chosen.lock().unwrap().clone().expect("slots were offered");
                Reply::ToolCalls(vec![call("book_meeting", json!({"starts_at": starts_at, "title": "زيارة المعرض"}))])
            }
            ("meeting_scheduler", None) => {
                Reply::ToolCalls(vec![call("find_slots", json!({"days_ahead": 7}))])
            }
            ("meeting_scheduler", Some(result)) if result.get("slots").is_some() => {
                let first = &result["slots"][0];
                *chosen.lock().unwrap() = first["starts_at"].as_str().map(str::to_owned);
                Reply::Text(format!("أقرب موعد متاح: {}. هل يناسبك؟", first["local_time"]))
            }
            ("meeting_scheduler", Some(result)) => Reply::Text(format!(
                "تم حجز موعدك: {}",
                result["result"]["meeting"]["starts_at"]
            )),
            (agent, result) => panic!("unexpected request for {agent}: {result:?}"),
        }
    });
    let phone = "966500000301";
    let says = [
        "السلام عليكم، أنا عبدالله من مؤسسة النخبة، أبحث عن سبائك ذهب عيار ٢٤ للاستثمار",
        "الميزانية ٢٠٠ ألف ريال، والقرار لي، وأريد الشراء خلال شهر",
        "ممكن نحدد موعد لزيارة المعرض؟",
        "الأول مناسب",
    ];
    let sent = converse(&h, phone, &says).await;
    assert_eq!(
        sent[0],
        "أهلًا عبدالله! كم الميزانية التقريبية، ومتى تنوي الشراء؟"
    );
    assert!(sent[1].starts_with("ممتاز يا عبدالله"));
    assert!(sent[2].starts_with("أقرب موعد متاح"), "{}", sent[2]);
    let starts_at = slot.lock().unwrap().clone().unwrap();
    assert_eq!(sent[3], format!("تم حجز موعدك: \"{starts_at}\""));

    // Each agent ran with its own prompt, in order; a handoff was answered at once.
    let agents: Vec<String> =
        sqlx::query_scalar("SELECT agent FROM ai_conversations ORDER BY turn_seq")
            .fetch_all(&h.app.test_db.db().admin)
            .await
            .unwrap();
    assert_eq!(
        agents,
        [
            "intake",
            "qualifier",
            "qualifier",
            "sales",
            "meeting_scheduler",
            "meeting_scheduler"
        ]
    );
    // The next agent saw the history and why it got the conversation.
    let qualifier_first = h
        .llm
        .requests()
        .into_iter()
        .find(|r| agent_of(r) == "qualifier")
        .unwrap();
    assert_eq!(last_contact_text(&qualifier_first), says[0]);
    assert!(
        qualifier_first["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains(
                "given this conversation by the intake agent. Reason: عميل جديد يريد سبائك للاستثمار"
            )
    );
    let tools: Vec<String> = sqlx::query_scalar("SELECT tool FROM agent_actions ORDER BY turn_seq")
        .fetch_all(&h.app.test_db.db().admin)
        .await
        .unwrap();
    assert_eq!(tools, ["create_lead", "set_qualification", "book_meeting"]);
    // Each prompt version used is recorded once, though the qualifier answered twice.
    assert_eq!(h.app.count("SELECT count(*) FROM prompt_versions").await, 4);
    assert_eq!(
        h.app
            .count("SELECT count(*) FROM conversations WHERE active_agent = 'meeting_scheduler'")
            .await,
        1
    );

    // The CRM, through the API.
    let manager = h.app.token(h.tenant, Role::SalesManager);
    let leads = h.app.get_json("/api/v1/leads", &manager).await;
    let lead = &leads["items"][0];
    assert_eq!(leads["items"].as_array().unwrap().len(), 1);
    assert_eq!(lead["status"], "qualified");
    assert_eq!(lead["source"], "whatsapp");
    assert_eq!(lead["territory"], "الرياض");
    assert_eq!(lead["qualification"]["company"], "مؤسسة النخبة");
    assert_eq!(lead["qualification"]["budget"], "٢٠٠ ألف ريال");
    let contact = h
        .app
        .get_json(
            &format!("/api/v1/contacts/{}", lead["contact_id"].as_str().unwrap()),
            &manager,
        )
        .await;
    assert_eq!(contact["display_name"], "عبدالله");
    // The rep's calendar shows the meeting, with the contact and the lead.
    let calendar = h
        .app
        .get_json(&format!("/api/v1/meetings?rep_user_id={}", rep.0), &manager)
        .await;
    let meetings = calendar["items"].as_array().unwrap();
    assert_eq!(meetings.len(), 1, "{calendar}");
    assert_eq!(meetings[0]["starts_at"], starts_at.as_str());
    assert_eq!(meetings[0]["contact_id"], lead["contact_id"]);
    assert_eq!(meetings[0]["lead_id"], lead["id"]);
    assert_eq!(meetings[0]["title"], "زيارة المعرض");
}

/// A tool the prompt does not list is refused, and so are arguments that do not fit the schema;
/// the model is told why each time and may correct itself. Three refusals in one turn hand the
/// conversation to a human.
#[tokio::test]
async fn refused_tool_calls_are_explained_and_repeated_failure_escalates() {
    let h = harness().await;
    let _rep = sales_rep(&h).await;
    qualified_lead(&h, "966500000302", "منى").await;
    qualified_lead(&h, "966500000303", "فهد").await;
    h.llm.respond_with(|req| {
        if agent_of(req) == "escalation" {
            return Reply::Text("حوّلنا محادثتك إلى زميل مختص.".into());
        }
        let persistent = last_contact_text(req).contains("ثلاث");
        match tool_rounds(req) {
            // book_meeting is the meeting scheduler's, not in the sales prompt.
            0 => Reply::ToolCalls(vec![call(
                "book_meeting",
                json!({"starts_at": "2026-12-06T10:00:00+03:00"}),
            )]),
            1 => Reply::ToolCalls(vec![call(
                "create_deal",
                json!({"title": "سبيكة ١٠٠ غرام", "amount": 26500, "currency": "ريال"}),
            )]),
            2 if persistent => Reply::ToolCalls(vec![call(
                "create_deal",
                json!({"title": "سبيكة", "amount": 1, "currency": "SAR", "tenant_id": "other"}),
            )]),
            2 => Reply::ToolCalls(vec![call(
                "create_deal",
                json!({"title": "سبيكة ١٠٠ غرام", "amount": 26500.5, "currency": "SAR"}),
            )]),
            _ => Reply::Text("تم فتح الصفقة.".into()),
        }
    });

    // The model corrects itself after two refusals: one deal.
    h.app
        .post_whatsapp(&notification(&[text(
            "r1",
            "966500000302",
            "أريد شراء سبيكة ١٠٠ غرام",
        )]))
        .await;
    h.graph.wait_for_delivered(1, WAIT).await;
    let requests = h.llm.requests();
    let told = |i: usize| {
        tool_result(&requests[i]).unwrap()["error"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        told(1),
        "the tool \"book_meeting\" is not available to this agent; use only the tools you were given"
    );
    assert_eq!(told(2), "arguments.currency must match ^[A-Z]{3}$");
    assert_eq!(tool_result(&requests[3]).unwrap()["ok"], true);
    let manager = h.app.token(h.tenant, Role::SalesManager);
    let deals = h.app.get_json("/api/v1/deals", &manager).await;
    assert_eq!(deals["items"].as_array().unwrap().len(), 1);
    assert_eq!(deals["items"][0]["amount_minor"], 2_650_050);
    assert_eq!(deals["items"][0]["currency"], "SAR");
    // The offered tools were the prompt's, with their schemas.
    let offered: Vec<&str> = requests[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        offered,
        [
            "search_knowledge",
            "update_lead",
            "create_deal",
            "handoff",
            "escalate"
        ]
    );

    // A third refusal in the same turn: a person takes over.
    h.app
        .post_whatsapp(&notification(&[text(
            "r2",
            "966500000303",
            "جربت ثلاث مرات",
        )]))
        .await;
    h.graph.wait_for_delivered(2, WAIT).await;
    wait_for_count(
        &h.app,
        "SELECT count(*) FROM conversations WHERE status = 'escalated' AND escalated_from = 'sales' AND owner_user_id IS NOT NULL",
        |n| n == 1,
        "the conversation handed to the rep",
    )
    .await;
    let deals = h.app.get_json("/api/v1/deals", &manager).await;
    assert_eq!(
        deals["items"].as_array().unwrap().len(),
        1,
        "no deal from refused calls"
    );
    assert_eq!(
        h.graph.delivered()[1].body["text"]["body"],
        "حوّلنا محادثتك إلى زميل مختص."
    );
}

/// The runtime's action handler, with a crash injected into the first commit of an action (the
/// agents rehearse with their own handler, so every call here is a commit).
struct CrashOnFirstCommit {
    calls: AtomicUsize,
}

impl ActionHandler for CrashOnFirstCommit {
    fn supports(&self, tool: &str) -> bool {
        api::actions::CrmActions.supports(tool)
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut runtime::db::TenantTx,
        ctx: ActionContext,
        action: &'a ToolAction,
    ) -> ActionFuture<'a> {
        assert!(
            self.calls.fetch_add(1, Ordering::SeqCst) != 0,
            "injected crash in the middle of the turn's commit"
        );
        api::actions::CrmActions.apply(tx, ctx, action)
    }

    fn read<'a>(
        &'a self,
        pool: &'a sqlx::PgPool,
        ctx: ActionContext,
        tool: &'a str,
        arguments: &'a Value,
    ) -> ActionFuture<'a> {
        api::actions::CrmActions.read(pool, ctx, tool, arguments)
    }
}

/// The turn crashes while committing its action: nothing of it stays, the conversation actor is
/// restarted, the turn runs again, and the deal exists once.
#[tokio::test]
async fn a_turn_rerun_after_a_crash_applies_its_actions_once() {
    let h = harness_full(
        |_| {},
        |parts| {
            parts.actions = Some(Arc::new(CrashOnFirstCommit {
                calls: AtomicUsize::new(0),
            }));
        },
    )
    .await;
    qualified_lead(&h, "966500000304", "نورة").await;
    h.llm.respond_with(|req| match tool_rounds(req) {
        0 => Reply::ToolCalls(vec![call(
            "create_deal",
            json!({"title": "سبائك", "amount": 80000, "currency": "SAR"}),
        )]),
        _ => Reply::Text("فتحنا لك الطلب.".into()),
    });
    h.app
        .post_whatsapp(&notification(&[text("c1", "966500000304", "تمام، نبدأ")]))
        .await;
    h.graph.wait_for_delivered(1, WAIT).await;
    // The turn ran again after the crash (two model calls per run: the tool call, the reply);
    // how many runs a restart takes is the runtime's business, what they apply is not.
    assert!(h.llm.requests().len() >= 4, "the turn ran again");
    // The sales agent's deal, once, on the contact's lead (REST).
    let manager = h.app.token(h.tenant, Role::SalesManager);
    let deals = h.app.get_json("/api/v1/deals", &manager).await;
    let items = deals["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["title"], "سبائك");
    assert_eq!(items[0]["amount_minor"], 8_000_000);
    assert_eq!(items[0]["currency"], "SAR");
    assert!(items[0]["lead_id"].is_string() && items[0]["contact_id"].is_string());
    assert_eq!(h.app.count("SELECT count(*) FROM agent_actions").await, 1);
    assert_eq!(
        h.app.count("SELECT count(*) FROM ai_conversations").await,
        1
    );
    assert_eq!(h.graph.delivered().len(), 1);
}

/// The same turn committed twice (a rerun racing the original) applies its actions once: the
/// messages are answered once, and the idempotency key (conversation, turn, call) refuses a second
/// application even when the turn's sequence comes round again.
#[tokio::test]
async fn an_action_is_applied_once_per_conversation_turn_and_call() {
    let h = harness_full(|_| {}, |_| {}).await;
    qualified_lead(&h, "966500000305", "ريم").await;
    h.llm.respond_with(|_| Reply::Text("أهلًا".into()));
    h.app
        .post_whatsapp(&notification(&[text("i1", "966500000305", "مرحبا")]))
        .await;
    h.graph.wait_for_delivered(1, WAIT).await;
    let db = &h.app.test_db.db().admin;
    let conversation: runtime::ConversationId = sqlx::query_scalar("SELECT id FROM conversations")
        .fetch_one(db)
        .await
        .unwrap();
    // A message of the contact, committed but not yet answered.
    sqlx::query(
        "INSERT INTO messages (tenant_id, conversation_id, direction, channel, kind, body)
         VALUES ($1, $2, 'inbound', 'whatsapp', 'text', 'أريد سبيكة')",
    )
    .bind(h.tenant)
    .bind(conversation)
    .execute(db)
    .await
    .unwrap();
    let input = runtime::turn::load_input(&h.app.test_db.db().app, h.tenant, conversation)
        .await
        .unwrap()
        .expect("a message to answer");
    let outcome = runtime::turn::TurnOutcome {
        actions: vec![runtime::turn::TurnAction::Tool(ToolAction {
            tool: "create_deal".into(),
            arguments: json!({"title": "سبيكة", "amount": 100, "currency": "SAR"}),
        })],
        ..runtime::turn::TurnOutcome::default()
    };
    let handler = api::actions::CrmActions;
    let apply = || {
        runtime::turn::apply(
            &h.app.test_db.db().app,
            &input,
            &outcome,
            |t| vec![t.to_owned()],
            None,
            Some(&handler),
        )
    };
    let first = apply().await.unwrap();
    assert!(matches!(apply().await, Err(runtime::Error::Conflict(_))));
    // The turn's sequence comes round again with its message unanswered (as if the commit's
    // effects were replayed): the action is not applied a second time.
    sqlx::query("UPDATE conversations SET turn_seq = turn_seq - 1")
        .execute(db)
        .await
        .unwrap();
    sqlx::query("UPDATE messages SET processed_at = NULL WHERE body = 'أريد سبيكة'")
        .execute(db)
        .await
        .unwrap();
    sqlx::query("DELETE FROM ai_conversations WHERE turn_seq = $1")
        .bind(first.turn_seq)
        .execute(db)
        .await
        .unwrap();
    let again = apply().await.unwrap();
    assert_eq!(again.turn_seq, first.turn_seq);
    assert_eq!(h.app.count("SELECT count(*) FROM deals").await, 1);
    assert_eq!(h.app.count("SELECT count(*) FROM agent_actions").await, 1);
}

/// A guarantee claim is routed to the guarantee agent, which opens the claim; the refund it asks
/// for waits for a person's approval and no money moves.
#[tokio::test]
async fn a_guarantee_claim_is_opened_and_its_refund_waits_for_approval() {
    let h = harness().await;
    h.llm.respond_with(|req| match (agent_of(req), tool_rounds(req)) {
        ("guarantee", 0) => Reply::ToolCalls(vec![
            call("open_guarantee_claim", json!({"description": "سبيكة ٥٠ غرام تبين أن عيارها أقل من ٢٤", "amount": 12500, "currency": "SAR"})),
            call("attach_evidence", json!({"description": "فاتورة رقم ٤٥٧١ وتقرير فحص المختبر", "url": "https://example.com/lab/4571"})),
            call("request_refund", json!({"amount": 12500, "reason": "العيار أقل من المذكور في الشهادة"})),
        ]),
        ("guarantee", _) => Reply::Text("فتحنا مطالبتك، وطلب الاسترداد قيد المراجعة وسنبلغك بالنتيجة.".into()),
        (agent, _) => panic!("unexpected agent {agent}"),
    });
    h.app
        .post_whatsapp(&notification(&[text(
            "g1",
            "966500000306",
            "أبغى استرجاع المبلغ، السبيكة طلعت مغشوشة",
        )]))
        .await;
    let sent = h.graph.wait_for_delivered(1, WAIT).await;
    assert!(
        sent[0].body["text"]["body"]
            .as_str()
            .unwrap()
            .contains("قيد المراجعة")
    );
    let results: Value = sqlx::query_scalar("SELECT tool_calls FROM ai_conversations")
        .fetch_one(&h.app.test_db.db().admin)
        .await
        .unwrap();
    assert_eq!(results[2]["result"]["result"]["refund"], "pending_approval");

    let manager = h.app.token(h.tenant, Role::SalesManager);
    let claims = h.app.get_json("/api/v1/guarantee-claims", &manager).await;
    let claim = &claims["items"][0];
    assert_eq!(claim["status"], "under_review");
    assert_eq!(claim["claimed_minor"], 1_250_000);
    assert_eq!(claim["currency"], "SAR");
    assert_eq!(
        claim["evidence"][0]["description"],
        "فاتورة رقم ٤٥٧١ وتقرير فحص المختبر"
    );
    assert_eq!(claim["evidence"][0]["url"], "https://example.com/lab/4571");
    assert_eq!(claim["evidence"][0]["added_by_agent"], "guarantee");
    let (kind, status, amount, subject): (String, String, i64, uuid::Uuid) =
        sqlx::query_as("SELECT kind, status, amount_minor, subject_id FROM approvals")
            .fetch_one(&h.app.test_db.db().admin)
            .await
            .unwrap();
    assert_eq!(
        (kind.as_str(), status.as_str(), amount),
        ("refund", "pending", 1_250_000)
    );
    assert_eq!(subject.to_string(), claim["id"].as_str().unwrap());
    assert_eq!(
        h.app.count("SELECT count(*) FROM guarantee_refunds").await,
        0
    );

    // A manager sees it waiting and approves it: the claim is approved for that amount, with who
    // approved it; a rep may not decide; a decision is final.
    let manager = h.app.user_token(h.tenant, Role::SalesManager).await;
    let approval = &pending_approval(&h, &manager).await;
    assert_eq!(approval["kind"], "refund");
    assert_eq!(approval["agent"], "guarantee");
    assert_eq!(approval["amount_minor"], 1_250_000);
    let path = format!(
        "/api/v1/approvals/{}/decision",
        approval["id"].as_str().unwrap()
    );
    let rep = h.app.user_token(h.tenant, Role::SalesRep).await;
    let approve = json!({"approve": true, "note": "تم التحقق من الشهادة"});
    assert_eq!(
        h.app
            .send("post", &path, Some(&rep), Some(&approve))
            .await
            .status(),
        403
    );
    let r = h
        .app
        .send("post", &path, Some(&manager), Some(&approve))
        .await;
    assert_eq!(r.status(), 200);
    let decided: Value = r.json().await.unwrap();
    assert_eq!(decided["status"], "approved");
    let claim = h
        .app
        .get_json(
            &format!("/api/v1/guarantee-claims/{}", claim["id"].as_str().unwrap()),
            &manager,
        )
        .await;
    assert_eq!(claim["status"], "approved");
    assert_eq!(claim["approved_minor"], 1_250_000);
    assert_eq!(claim["approved_by_user_id"], decided["decided_by_user_id"]);
    assert_eq!(
        h.app
            .send("post", &path, Some(&manager), Some(&approve))
            .await
            .status(),
        409
    );
    let waiting = h
        .app
        .get_json("/api/v1/approvals?status=pending", &manager)
        .await;
    assert_eq!(waiting["items"], json!([]));
}

/// An Arabic escalation keyword of the sales prompt hands the conversation to the escalation
/// agent, which assigns the rep, tells the rep why and tells the contact. From then on no agent
/// answers that contact (and no model is called) until the rep hands it back; then the agent that
/// escalated answers again.
#[tokio::test]
async fn escalation_by_arabic_keyword_silences_the_agents_until_hand_back() {
    let h = harness().await;
    let rep = sales_rep(&h).await;
    qualified_lead(&h, "966500000307", "سلمان").await;
    h.llm
        .respond_with(|req| match (agent_of(req), tool_rounds(req)) {
            ("escalation", 0) => Reply::ToolCalls(vec![
                call("assign_conversation", json!({"reason": "تهديد قانوني"})),
                call(
                    "notify_rep",
                    json!({"summary": "العميل سلمان يذكر محاميًا بخصوص طلبه؛ يحتاج موظفًا الآن."}),
                ),
            ]),
            ("escalation", _) => Reply::Text(
                "شكرًا لصبرك، حوّلنا محادثتك إلى أحد زملائنا وسيتواصل معك هنا قريبًا.".into(),
            ),
            (_, _) => Reply::Text(format!("رد المبيعات: {}", last_contact_text(req))),
        });
    let phone = "966500000307";
    // «محامٍ» with its diacritic matches the keyword «محامي» of the sales prompt.
    h.app
        .post_whatsapp(&notification(&[text(
            "x1",
            phone,
            "سأكلم مُحامٍ إذا ما وصلني الطلب",
        )]))
        .await;
    let sent = h.graph.wait_for_delivered(1, WAIT).await;
    assert!(
        sent[0].body["text"]["body"]
            .as_str()
            .unwrap()
            .starts_with("شكرًا لصبرك")
    );
    assert_eq!(
        h.llm.requests().len(),
        2,
        "only the escalation agent called the model"
    );
    let manager = h.app.token(h.tenant, Role::SalesManager);
    let conversations = h
        .app
        .get_json("/api/v1/conversations?status=escalated", &manager)
        .await;
    let conversation = &conversations["items"][0];
    assert_eq!(conversation["owner_user_id"], rep.0.to_string());
    assert_eq!(conversation["needs_human"], true);
    let id = conversation["id"].as_str().unwrap().to_owned();
    let rep_token = h.app.keys.issue(
        h.tenant,
        Role::SalesRep,
        &rep.0.to_string(),
        time::Duration::minutes(10),
    );
    let notes = h.app.get_json("/api/v1/notifications", &rep_token).await;
    assert_eq!(
        notes["items"][0]["body"],
        "العميل سلمان يذكر محاميًا بخصوص طلبه؛ يحتاج موظفًا الآن."
    );
    assert_eq!(notes["items"][0]["data"]["conversation_id"], id.as_str());

    // Silence: the contact writes again; no agent runs.
    h.app
        .post_whatsapp(&notification(&[text("x2", phone, "هل من أحد؟")]))
        .await;
    wait_for_count(
        &h.app,
        "SELECT count(*) FROM messages WHERE direction = 'inbound' AND processed_at IS NULL",
        |n| n == 0,
        "the message handed to the rep",
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(h.graph.delivered().len(), 1);
    assert_eq!(h.llm.requests().len(), 2);

    // Another rep may not hand it back; its rep may.
    let other = h.app.user_token(h.tenant, Role::SalesRep).await;
    let path = format!("/api/v1/conversations/{id}/hand-back");
    assert_eq!(
        h.app.send("post", &path, Some(&other), None).await.status(),
        403
    );
    let r = h.app.send("post", &path, Some(&rep_token), None).await;
    assert_eq!(r.status(), 200);
    let back: Value = r.json().await.unwrap();
    assert_eq!(back["status"], "open");
    assert_eq!(
        back["active_agent"], "sales",
        "back to the agent that escalated"
    );
    assert_eq!(back["owner_user_id"], Value::Null);
    assert_eq!(
        h.app
            .send("post", &path, Some(&rep_token), None)
            .await
            .status(),
        409
    );

    h.app
        .post_whatsapp(&notification(&[text("x3", phone, "تمام، وصل الطلب")]))
        .await;
    let sent = h.graph.wait_for_delivered(2, WAIT).await;
    assert_eq!(sent[1].body["text"]["body"], "رد المبيعات: تمام، وصل الطلب");
}

/// Prompt files are live: an edit is used by the next turn without a restart (and its version is
/// recorded and audited); an edit that does not load is refused and the last good version serves.
#[tokio::test]
async fn an_edited_prompt_is_used_by_the_next_turn_and_a_broken_edit_keeps_the_old_one() {
    let dir = prompts_copy();
    let prompts = dir.path().to_owned();
    let h = harness_full(move |s| s.prompts_dir = prompts, |_| {}).await;
    qualified_lead(&h, "966500000308", "هند").await;
    h.llm.respond_with(|_| Reply::Text("حاضر".into()));
    let system_of_last = |h: &Harness| {
        h.llm.requests().last().unwrap()["messages"][0]["content"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let phone = "966500000308";
    h.app
        .post_whatsapp(&notification(&[text("h1", phone, "مرحبا")]))
        .await;
    h.graph.wait_for_delivered(1, WAIT).await;
    assert!(!system_of_last(&h).contains("عرض رمضان"));

    let sales = dir.path().join("sales.md");
    let edited = add_ramadan_offer(&sales);
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    h.app
        .post_whatsapp(&notification(&[text("h2", phone, "ما الجديد؟")]))
        .await;
    h.graph.wait_for_delivered(2, WAIT).await;
    assert!(
        system_of_last(&h).contains("اذكر عرض رمضان"),
        "the edit is live"
    );

    // A broken edit (bad TOML) is refused: the last good version keeps serving.
    std::fs::write(
        &sales,
        edited.replacen("temperature = 0.3", "temperature = = 0.3", 1),
    )
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    h.app
        .post_whatsapp(&notification(&[text("h3", phone, "وبعد؟")]))
        .await;
    h.graph.wait_for_delivered(3, WAIT).await;
    assert!(system_of_last(&h).contains("اذكر عرض رمضان"));

    let versions: Vec<String> =
        sqlx::query_scalar("SELECT prompt_version FROM ai_conversations ORDER BY turn_seq")
            .fetch_all(&h.app.test_db.db().admin)
            .await
            .unwrap();
    assert_eq!(versions.len(), 3);
    assert_ne!(versions[0], versions[1]);
    assert_eq!(versions[1], versions[2]);
    // Each version recorded once, with its bytes; every audited turn refers to one of them.
    assert_eq!(
        h.app
            .count("SELECT count(*) FROM prompt_versions WHERE agent = 'sales'")
            .await,
        2
    );
    assert_eq!(
        h.app
            .count("SELECT count(*) FROM ai_conversations a WHERE NOT EXISTS (SELECT 1 FROM prompt_versions p WHERE p.tenant_id = a.tenant_id AND p.version = a.prompt_version)")
            .await,
        0
    );
    let body: String = sqlx::query_scalar("SELECT body FROM prompt_versions WHERE version = $1")
        .bind(&versions[1])
        .fetch_one(&h.app.test_db.db().admin)
        .await
        .unwrap();
    assert_eq!(body, edited);
}

/// The follow-up agent honours an opt-out at once: the lead is closed with the reason and the
/// refusal of consent is recorded on the channel.
#[tokio::test]
async fn an_opt_out_closes_the_lead_and_records_the_refusal() {
    let h = harness().await;
    let lead = qualified_lead(&h, "966500000309", "ماجد").await;
    h.llm
        .respond_with(|req| match (agent_of(req), tool_rounds(req)) {
            ("follow_up", 0) => Reply::ToolCalls(vec![call(
                "mark_lost",
                json!({"reason": "طلب عدم مراسلته", "opted_out": true}),
            )]),
            ("follow_up", _) => Reply::Text("نعتذر عن الإزعاج، لن نراسلك مجددًا. شكرًا لك.".into()),
            _ => Reply::Text("أهلًا ماجد".into()),
        });
    let phone = "966500000309";
    h.app
        .post_whatsapp(&notification(&[text("o1", phone, "مرحبا")]))
        .await;
    h.graph.wait_for_delivered(1, WAIT).await;
    // As the follow-up timer would: the follow-up agent has the conversation.
    sqlx::query("UPDATE conversations SET active_agent = 'follow_up'")
        .execute(&h.app.test_db.db().admin)
        .await
        .unwrap();
    h.app
        .post_whatsapp(&notification(&[text(
            "o2",
            phone,
            "لا تراسلوني مرة أخرى من فضلك",
        )]))
        .await;
    let sent = h.graph.wait_for_delivered(2, WAIT).await;
    assert!(
        sent[1].body["text"]["body"]
            .as_str()
            .unwrap()
            .starts_with("نعتذر")
    );
    let manager = h.app.token(h.tenant, Role::SalesManager);
    let lead = h
        .app
        .get_json(&format!("/api/v1/leads/{lead}"), &manager)
        .await;
    assert_eq!(lead["status"], "disqualified");
    assert_eq!(lead["disqualified_reason"], "طلب عدم مراسلته");
    let contact = h
        .app
        .get_json(
            &format!("/api/v1/contacts/{}", lead["contact_id"].as_str().unwrap()),
            &manager,
        )
        .await;
    assert_eq!(contact["consent"]["whatsapp"]["status"], "opted_out");
}

/// A request to change a meeting is routed to the meeting scheduler, which moves the contact's
/// next meeting (same rep) to the asked time; the rep's calendar shows the new time.
#[tokio::test]
async fn the_meeting_scheduler_moves_the_contacts_meeting() {
    let h = harness().await;
    let rep = rep_with_hours(&h).await;
    let lead = qualified_lead(&h, "966500000310", "لطيفة").await;
    let manager = h.app.token(h.tenant, Role::SalesManager);
    let lead = h
        .app
        .get_json(&format!("/api/v1/leads/{lead}"), &manager)
        .await;
    let tomorrow = (time::OffsetDateTime::now_utc() + time::Duration::days(1))
        .replace_time(time::Time::from_hms(10, 0, 0).unwrap());
    let rfc = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let r = h
        .app
        .send(
            "post",
            "/api/v1/meetings",
            Some(&manager),
            Some(&json!({"rep_user_id": rep.0, "contact_id": lead["contact_id"], "title": "زيارة المعرض",
                "starts_at": rfc(tomorrow), "ends_at": rfc(tomorrow + time::Duration::minutes(30))})),
        )
        .await;
    assert_eq!(r.status(), 201);
    let meeting: Value = r.json().await.unwrap();
    let moved = rfc(tomorrow + time::Duration::hours(2));
    let to = moved.clone();
    h.llm
        .respond_with(move |req| match (agent_of(req), tool_rounds(req)) {
            ("meeting_scheduler", 0) => {
                Reply::ToolCalls(vec![call("reschedule_meeting", json!({"starts_at": to}))])
            }
            ("meeting_scheduler", _) => Reply::Text("تم تغيير موعدك.".into()),
            (agent, _) => panic!("unexpected agent {agent}"),
        });
    h.app
        .post_whatsapp(&notification(&[text(
            "m1",
            "966500000310",
            "أبغى أغير موعد الزيارة ساعتين بعد",
        )]))
        .await;
    h.graph.wait_for_delivered(1, WAIT).await;
    let after = h
        .app
        .get_json(
            &format!("/api/v1/meetings/{}", meeting["id"].as_str().unwrap()),
            &manager,
        )
        .await;
    assert_eq!(after["starts_at"], moved.as_str());
    assert_eq!(after["rep_user_id"], rep.0.to_string());
    assert_eq!(after["status"], "scheduled");
}

/// A prospective affiliate is routed to the recruiter, who registers the application; once a
/// manager approves it, the onboarding agent walks them through the steps and issues their code.
#[tokio::test]
async fn an_affiliate_applies_is_approved_onboarded_and_gets_a_code() {
    let h = harness().await;
    h.llm.respond_with(|req| match (agent_of(req), tool_rounds(req)) {
        ("affiliate_recruiter", 0) => Reply::ToolCalls(vec![call(
            "create_affiliate_application",
            json!({"name": "فيصل العتيبي", "experience": "أدير حسابًا عن الاستثمار في الذهب", "audience": "متابعون في الرياض"}),
        )]),
        ("affiliate_recruiter", _) => Reply::Text("سجلنا طلبك، وسيراجعه الفريق قريبًا.".into()),
        ("affiliate_onboarding", 0) => Reply::ToolCalls(vec![
            call("complete_onboarding_step", json!({"step": "contract"})),
            call("complete_onboarding_step", json!({"step": "training"})),
            call("complete_onboarding_step", json!({"step": "payout_details"})),
            call("issue_referral_code", json!({})),
        ]),
        ("affiliate_onboarding", _) => Reply::Text(format!(
            "مبروك! أصبحت شريكًا معنا. كودك: {}",
            tool_result(req).unwrap()["result"]["referral_code"].as_str().unwrap_or("?")
        )),
        (agent, _) => panic!("unexpected agent {agent}"),
    });
    let phone = "966500000311";
    h.app
        .post_whatsapp(&notification(&[text(
            "a1",
            phone,
            "السلام عليكم، أبغى أصير مسوق بالعمولة عندكم",
        )]))
        .await;
    let sent = h.graph.wait_for_delivered(1, WAIT).await;
    assert_eq!(
        sent[0].body["text"]["body"],
        "سجلنا طلبك، وسيراجعه الفريق قريبًا."
    );
    let manager = h.app.token(h.tenant, Role::SalesManager);
    let affiliates = h.app.get_json("/api/v1/affiliates", &manager).await;
    let affiliate = &affiliates["items"][0];
    assert_eq!(affiliate["display_name"], "فيصل العتيبي");
    assert_eq!(affiliate["status"], "applied");
    let id = affiliate["id"].as_str().unwrap().to_owned();
    let r = h
        .app
        .send(
            "patch",
            &format!("/api/v1/affiliates/{id}"),
            Some(&manager),
            Some(&json!({"status": "approved"})),
        )
        .await;
    assert_eq!(r.status(), 200);
    // As the approval event would: the onboarding agent has the conversation.
    sqlx::query("UPDATE conversations SET active_agent = 'affiliate_onboarding'")
        .execute(&h.app.test_db.db().admin)
        .await
        .unwrap();
    h.app
        .post_whatsapp(&notification(&[text(
            "a2",
            phone,
            "وافقت على العقد وقرأت دليل المنتجات وأرسلت بيانات الحساب",
        )]))
        .await;
    let sent = h.graph.wait_for_delivered(2, WAIT).await;
    let affiliate = h
        .app
        .get_json(&format!("/api/v1/affiliates/{id}"), &manager)
        .await;
    assert_eq!(affiliate["status"], "active");
    assert!(
        affiliate["onboarding"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["done_at"].is_string())
    );
    let code = affiliate["referral_code"].as_str().unwrap();
    assert_eq!(
        sent[1].body["text"]["body"],
        format!("مبروك! أصبحت شريكًا معنا. كودك: {code}")
    );
}

/// Sales hands a price objection to the objection handler, which answers from the knowledge base
/// with its citation and hands the conversation back to sales; the conversation and its audited
/// turns show the round trip through the API.
#[tokio::test]
async fn an_objection_goes_to_the_objection_handler_and_back_to_sales() {
    let h = harness().await;
    let admin = h.app.user_token(h.tenant, Role::Admin).await;
    let article = json!({"title": "سياسة الأسعار", "language": "ar",
        "body": "# الأسعار\n\n## المصنعية\n\nسعر السبيكة يشمل شهادة النقاء وضمان الاسترداد مدى الحياة."});
    let r = h
        .app
        .send("post", "/api/v1/articles", Some(&admin), Some(&article))
        .await;
    assert_eq!(r.status(), 201);
    qualified_lead(&h, "966500000312", "عمر").await;
    h.llm.respond_with(|req| match (agent_of(req), tool_rounds(req)) {
        ("sales", _) if !system_of(req).contains("by the objection_handler agent") => Reply::ToolCalls(vec![call(
            "handoff",
            json!({"to_agent": "objection_handler", "reason": "اعتراض على السعر"}),
        )]),
        ("sales", _) => Reply::Text("يسعدني ذلك! هل نكمل الطلب؟".into()),
        ("objection_handler", 0) => Reply::ToolCalls(vec![call(
            "search_knowledge",
            json!({"query": "ماذا يشمل سعر السبيكة"}),
        )]),
        ("objection_handler", 1) => {
            let hit = tool_result(req).unwrap()["results"][0].clone();
            Reply::ToolCalls(vec![call(
                "handoff",
                json!({"to_agent": "sales", "reason": format!("أجبت عن السعر: {}", hit["citation"].as_str().unwrap())}),
            )])
        }
        (agent, n) => panic!("unexpected request for {agent} at round {n}"),
    });
    h.app
        .post_whatsapp(&notification(&[text(
            "ob1",
            "966500000312",
            "السعر غالي مقارنة بالسوق",
        )]))
        .await;
    // Sales hands over, the objection handler answers and hands back, sales closes the loop.
    let sent = h.graph.wait_for_delivered(1, WAIT).await;
    assert_eq!(sent[0].body["text"]["body"], "يسعدني ذلك! هل نكمل الطلب؟");
    let manager = h.app.token(h.tenant, Role::SalesManager);
    let (conversation, turns) = latest_conversation_turns(&h, &manager).await;
    assert_eq!(conversation["active_agent"], "sales");
    let agents: Vec<&str> = turns["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["agent"].as_str().unwrap())
        .collect();
    assert_eq!(agents, ["sales", "objection_handler", "sales"]);
    let cited = &turns["items"][1]["tool_calls"][0]["result"]["results"][0]["citation"];
    assert_eq!(cited, "سياسة الأسعار › الأسعار › المصنعية");
}

/// The proposal writer drafts an offer from the contact's deal (routed by «عرض سعر»). Its 8 %
/// discount is beyond the owner's 3 % limit: the proposal waits as a draft, a discount approval
/// waits for a manager, and sending it is refused (the model is told, the contact hears it is
/// under review). Approved, it is sent at the contact's next message.
#[tokio::test]
async fn a_discount_beyond_the_reps_limit_waits_for_approval_before_the_proposal_is_sent() {
    let h = harness().await;
    let rep = sales_rep(&h).await;
    let manager = h.app.user_token(h.tenant, Role::SalesManager).await;
    let r = h
        .app
        .send(
            "put",
            &format!("/api/v1/users/{}/sales-profile", rep.0),
            Some(&manager),
            Some(&json!({"max_discount_bps": 300})),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let phone = "966500000320";
    let lead = qualified_lead(&h, phone, "فهد").await;
    let lead = h
        .app
        .get_json(&format!("/api/v1/leads/{lead}"), &manager)
        .await;
    let r = h
        .app
        .send(
            "post",
            "/api/v1/deals",
            Some(&manager),
            Some(
                &json!({"title": "سبائك ٥٠٠ غرام", "amount_minor": 15_000_000, "currency": "SAR",
                          "lead_id": lead["id"], "contact_id": lead["contact_id"],
                          "owner_user_id": rep.0}),
            ),
        )
        .await;
    assert_eq!(r.status(), 201);
    let deal: Value = r.json().await.unwrap();
    h.llm.respond_with(|req| {
        let said = last_contact_text(req);
        match (agent_of(req), tool_result(req)) {
            ("proposal_writer", None) if said.contains("جاهز") => {
                Reply::ToolCalls(vec![call("send_proposal", json!({}))])
            }
            ("proposal_writer", None) => Reply::ToolCalls(vec![
                call(
                    "create_proposal",
                    json!({"title": "عرض سبائك ٥٠٠ غرام عيار ٢٤",
                           "body": "## العرض\nسبائك ٥٠٠ غرام عيار ٢٤ مع شهادة وضمان.\nصالح لمدة ٣ أيام.",
                           "discount_percent": 8}),
                ),
                call("send_proposal", json!({})),
            ]),
            ("proposal_writer", Some(result)) if result["result"]["proposal"]["status"] == "sent" => {
                Reply::Text(format!(
                    "أرسلت لك العرض: {} {}",
                    result["result"]["proposal"]["amount"],
                    result["result"]["proposal"]["currency"].as_str().unwrap()
                ))
            }
            ("proposal_writer", Some(result)) => {
                assert!(
                    result["error"].as_str().unwrap_or_default().contains("approval"),
                    "{result}"
                );
                Reply::Text("العرض قيد المراجعة وسأرسله لك قريبًا".into())
            }
            (agent, result) => panic!("unexpected request for {agent}: {result:?}"),
        }
    });
    let sent = converse(&h, phone, &["أرسل لي عرض سعر رسمي من فضلك"]).await;
    assert_eq!(sent[0], "العرض قيد المراجعة وسأرسله لك قريبًا");
    let proposals = h
        .app
        .get_json(
            &format!("/api/v1/proposals?deal_id={}", deal["id"].as_str().unwrap()),
            &manager,
        )
        .await;
    let proposal = &proposals["items"][0];
    assert_eq!(proposal["status"], "draft");
    assert_eq!(proposal["discount_bps"], 800);
    assert_eq!(proposal["amount_minor"], 13_800_000);
    assert_eq!(proposal["author_agent"], "proposal_writer");
    let approval = &pending_approval(&h, &manager).await;
    assert_eq!(approval["kind"], "discount");
    assert_eq!(approval["subject_type"], "proposal");
    assert_eq!(approval["subject_id"], proposal["id"]);
    assert_eq!(approval["amount_minor"], 1_200_000);

    approve(&h, &manager, approval).await;
    let sent = converse(&h, phone, &["هل العرض جاهز؟"]).await;
    assert_eq!(sent[1], "أرسلت لك العرض: 138000.0 SAR");
    let sent = h
        .app
        .get_json(
            &format!("/api/v1/proposals/{}", proposal["id"].as_str().unwrap()),
            &manager,
        )
        .await;
    assert_eq!(sent["status"], "sent");
    assert!(sent["sent_at"].is_string());
}

/// An affiliate asks about commissions and performance: the commission agent computes what the
/// tenant's rule pays on an amount (marginal tiers) and opens a dispute about their latest
/// commission; the affiliate coach reads their figures. What they say matches the REST API.
#[tokio::test]
async fn an_affiliate_hears_their_commission_disputes_it_and_gets_coached() {
    let h = harness().await;
    let manager = h.app.token(h.tenant, Role::SalesManager);
    let phone = "966500000330";
    let post = async |path: &str, body: Value| -> Value {
        let r = h.app.send("post", path, Some(&manager), Some(&body)).await;
        assert_eq!(r.status(), 201, "{path}: {}", r.text().await.unwrap());
        r.json().await.unwrap()
    };
    let contact = post(
        "/api/v1/contacts",
        json!({"display_name": "سلمان", "identities": [{"kind": "phone", "value": format!("+{phone}")}]}),
    )
    .await;
    let affiliate = post(
        "/api/v1/affiliates",
        json!({"display_name": "سلمان", "contact_id": contact["id"]}),
    )
    .await;
    post(
        "/api/v1/commission-rules",
        json!({"name": "المسوقون", "beneficiary": "affiliate", "currency": "SAR",
               "tiers": [{"from_minor": 0, "rate_bps": 500}, {"from_minor": 10_000_000, "rate_bps": 700}]}),
    )
    .await;
    // One deal the affiliate brought, won: 80,000 SAR at 5 % = 4,000 SAR.
    let won = stage_where(&h, &manager, "kind", "won").await;
    let deal = post(
        "/api/v1/deals",
        json!({"title": "سبائك", "amount_minor": 8_000_000, "currency": "SAR", "affiliate_id": affiliate["id"]}),
    )
    .await;
    move_deal(&h, &manager, &deal, &won).await;
    let commissions = h.app.get_json("/api/v1/commissions", &manager).await;
    let commission = &commissions["items"][0];
    assert_eq!(commission["amount_minor"], 400_000);

    let stats: Arc<Mutex<Option<Value>>> = Arc::default();
    let seen = stats.clone();
    h.llm.respond_with(move |req| {
        let said = last_contact_text(req);
        match (agent_of(req), tool_result(req)) {
            ("commission", None) if said.contains("اعتراض") => Reply::ToolCalls(vec![call(
                "open_commission_dispute",
                json!({"reason": "العمولة أقل من المتفق عليه: ٥٪ على ٨٠ ألف"}),
            )]),
            ("commission", None) => Reply::ToolCalls(vec![call(
                "calculate_commission",
                json!({"amount": 150_000, "currency": "SAR"}),
            )]),
            ("commission", Some(result)) if result.get("commission").is_some() => {
                Reply::Text(format!("عمولتك: {} ريال", result["commission"]))
            }
            ("commission", Some(result)) => Reply::Text(format!(
                "فتحت اعتراضًا على عمولة {} ريال",
                result["result"]["dispute"]["commission"]
            )),
            ("affiliate_coach", None) => {
                Reply::ToolCalls(vec![call("get_affiliate_stats", json!({"days": 30}))])
            }
            ("affiliate_coach", Some(result)) => {
                *seen.lock().unwrap() = Some(result.clone());
                Reply::Text(format!(
                    "صفقات رابحة: {}، عمولات معلقة: {} ريال",
                    result["won_deals"], result["commissions"]["pending"]["SAR"]
                ))
            }
            (agent, result) => panic!("unexpected request for {agent}: {result:?}"),
        }
    });
    let says = [
        "كم عمولتي لو بعت سبائك بقيمة ١٥٠ ألف ريال؟",
        "عمولتي عن الصفقة الأخيرة ناقصة، أريد فتح اعتراض",
        "كيف أداء إحالاتي هذا الشهر؟",
    ];
    let sent = converse(&h, phone, &says).await;
    // 150,000 SAR: 5 % of the first 100,000 and 7 % of the rest = 5,000 + 3,500.
    assert_eq!(sent[0], "عمولتك: 8500.0 ريال");
    assert_eq!(sent[1], "فتحت اعتراضًا على عمولة 4000.0 ريال");
    assert_eq!(sent[2], "صفقات رابحة: 1، عمولات معلقة: 4000.0 ريال");

    let disputes = h.app.get_json("/api/v1/disputes", &manager).await;
    let dispute = &disputes["items"][0];
    assert_eq!(dispute["subject_kind"], "commission");
    assert_eq!(dispute["subject_id"], commission["id"]);
    assert_eq!(
        dispute["reason"],
        "العمولة أقل من المتفق عليه: ٥٪ على ٨٠ ألف"
    );
    assert_eq!(dispute["status"], "open");
    let stats = stats.lock().unwrap().clone().unwrap();
    assert_eq!(stats["won_value"]["SAR"], 80_000.0);
    assert_eq!(stats["affiliate"], "سلمان");
}
