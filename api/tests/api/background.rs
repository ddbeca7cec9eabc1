//! The background agents at work: CRM changes made through the REST API become events, the
//! scorer, router and deal coach react with their tools, and the effect is read back through the
//! REST API. They never message a contact.

use std::time::Duration;

use api::auth::Role;
use api::testkit::llm::Reply;
use serde_json::{Value, json};

use crate::agents::{
    agent_of, approve, call, last_contact_text, move_deal, pending_approval, sales_rep,
    stage_where, system_of, tool_result,
};
use crate::conversation::{
    Harness, WAIT, harness_full, notification, qualified_lead, text, wait_for_count,
};

/// A harness whose runtime takes up CRM events at once.
async fn harness() -> Harness {
    harness_full(
        |_| {},
        |parts| parts.config.events_poll = Duration::from_millis(100),
    )
    .await
}

async fn created(h: &Harness, token: &str, path: &str, body: Value) -> Value {
    let r = h.app.send("post", path, Some(token), Some(&body)).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    r.json().await.unwrap()
}

/// A lead captured by a rep (REST) is scored by the scorer from what is known — an Arabic budget
/// in Eastern Arabic digits included; the score crosses the router's threshold while nobody owns
/// the lead, so the router assigns it to a rep. Each reacted once, in an audited turn of its own,
/// and nobody was messaged.
#[tokio::test]
async fn a_new_lead_is_scored_and_a_high_score_gets_it_routed_to_a_rep() {
    let h = harness().await;
    let rep = sales_rep(&h).await;
    h.llm.respond_with(|req| {
        let event = last_contact_text(req);
        match (agent_of(req), tool_result(req)) {
            ("scorer", None) => {
                assert!(event.starts_with("CRM event: lead_updated"), "{event}");
                assert!(
                    event.contains("٢٠٠ ألف ريال"),
                    "the scorer reads the lead: {event}"
                );
                Reply::ToolCalls(vec![call(
                    "set_lead_score",
                    json!({"score": 85, "reasons": [
                        {"reason": "budget «٢٠٠ ألف ريال» fits", "points": 25},
                        {"reason": "clear need: 24k bullion", "points": 30},
                        {"reason": "decides alone", "points": 15},
                        {"reason": "buys within a month", "points": 15}]}),
                )])
            }
            ("router", None) => {
                assert!(
                    event.starts_with("CRM event: lead_score_crossed"),
                    "{event}"
                );
                Reply::ToolCalls(vec![call(
                    "assign_lead",
                    json!({"reason": "score 85, Riyadh"}),
                )])
            }
            ("scorer" | "router", Some(_)) => Reply::Text("done".into()),
            (agent, result) => panic!("unexpected request for {agent}: {result:?}"),
        }
    });
    let manager = h.app.token(h.tenant, Role::SalesManager);
    let lead = created(
        &h,
        &manager,
        "/api/v1/leads",
        json!({"source": "web", "territory": "الرياض",
               "qualification": {"need": "سبائك ذهب عيار ٢٤", "budget": "٢٠٠ ألف ريال",
                                 "authority": "القرار له", "timeline": "خلال شهر"}}),
    )
    .await;
    let id = lead["id"].as_str().unwrap().to_owned();
    wait_for_count(
        &h.app,
        "SELECT count(*) FROM leads WHERE owner_user_id IS NOT NULL",
        |n| n == 1,
        "the router assigns the lead",
    )
    .await;

    let lead = h
        .app
        .get_json(&format!("/api/v1/leads/{id}"), &manager)
        .await;
    assert_eq!(lead["score"], 85);
    assert_eq!(
        lead["score_reasons"][0]["reason"],
        "budget «٢٠٠ ألف ريال» fits"
    );
    assert_eq!(lead["score_reasons"][0]["points"], 25);
    assert_eq!(lead["owner_user_id"], rep.0.to_string());

    // One audited turn per event, each action once under the event's key, nothing sent.
    let turns: Vec<(String, Option<uuid::Uuid>)> =
        sqlx::query_as("SELECT agent, conversation_id FROM ai_conversations ORDER BY created_at")
            .fetch_all(&h.app.test_db.db().admin)
            .await
            .unwrap();
    assert_eq!(
        turns,
        [("scorer".to_owned(), None), ("router".to_owned(), None)]
    );
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT idempotency_key FROM agent_actions ORDER BY created_at")
            .fetch_all(&h.app.test_db.db().admin)
            .await
            .unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|k| k.starts_with("event:")), "{keys:?}");
    assert_eq!(
        h.app
            .count("SELECT count(*) FROM agent_events WHERE status <> 'done'")
            .await,
        0
    );
    // The scorer's own change (the score) is not a new "lead updated": it ran once.
    assert_eq!(
        h.app
            .count("SELECT count(*) FROM agent_events WHERE agent = 'scorer'")
            .await,
        1
    );
    assert_eq!(h.app.count("SELECT count(*) FROM outbox").await, 0);
    assert!(h.graph.delivered().is_empty());
}

/// A deal moved to another stage (REST) gets the deal coach's estimate and next step, visible on
/// the deal, and a task for its owner, in their notifications; the stage stays where the rep put
/// it.
#[tokio::test]
async fn a_deal_moved_to_another_stage_gets_the_coachs_estimate_and_next_step() {
    let h = harness().await;
    let rep = sales_rep(&h).await;
    h.llm.respond_with(|req| {
        let event = last_contact_text(req);
        match (agent_of(req), tool_result(req)) {
            ("deal_coach", None) => {
                assert!(
                    event.starts_with("CRM event: deal_stage_changed"),
                    "{event}"
                );
                assert!(event.contains("\"to_stage\": \"negotiation\""), "{event}");
                Reply::ToolCalls(vec![
                    call(
                        "update_deal",
                        json!({"probability": 65,
                               "next_step": "اتصل بالعميل لتأكيد سعر الغرام قبل الخميس"}),
                    ),
                    call(
                        "create_task",
                        json!({"title": "اتصال تأكيد السعر", "due_date": "2026-12-03",
                               "notes": "العميل ينتظر تثبيت سعر الغرام"}),
                    ),
                ])
            }
            ("deal_coach", Some(_)) => Reply::Text("done".into()),
            (agent, result) => panic!("unexpected request for {agent}: {result:?}"),
        }
    });
    let manager = h.app.token(h.tenant, Role::SalesManager);
    let negotiation = stage_where(&h, &manager, "name", "negotiation").await;
    let deal = created(
        &h,
        &manager,
        "/api/v1/deals",
        json!({"title": "سبائك ١ كغ", "amount_minor": 35_000_000, "currency": "SAR",
               "owner_user_id": rep.0}),
    )
    .await;
    let id = deal["id"].as_str().unwrap().to_owned();
    move_deal(&h, &manager, &deal, &negotiation).await;
    wait_for_count(
        &h.app,
        "SELECT count(*) FROM deals WHERE win_probability IS NOT NULL",
        |n| n == 1,
        "the deal coach updates the deal",
    )
    .await;
    let deal = h
        .app
        .get_json(&format!("/api/v1/deals/{id}"), &manager)
        .await;
    assert_eq!(deal["win_probability"], 65);
    assert_eq!(
        deal["next_step"],
        "اتصل بالعميل لتأكيد سعر الغرام قبل الخميس"
    );
    assert_eq!(deal["stage_id"], negotiation);
    let rep_token = h.app.keys.issue(
        h.tenant,
        Role::SalesRep,
        &rep.0.to_string(),
        time::Duration::minutes(10),
    );
    let notes = h.app.get_json("/api/v1/notifications", &rep_token).await;
    let task = notes["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["kind"] == "task")
        .expect("the owner has the task");
    assert_eq!(task["title"], "اتصال تأكيد السعر");
    assert_eq!(task["data"]["deal_id"], id);
    assert_eq!(task["data"]["due_date"], "2026-12-03");
    assert_eq!(
        h.app
            .count(
                "SELECT count(*) FROM agent_events WHERE agent = 'deal_coach' AND status = 'done'"
            )
            .await,
        1
    );
}

/// Once a day each tenant with open deals gets a forecast event carrying the month's pipeline; the
/// forecaster's estimate shows beside the weighted pipeline (REST). A second schedule the same day
/// writes nothing.
#[tokio::test]
async fn the_daily_forecast_event_gets_the_forecasters_estimate() {
    let h = harness().await;
    let today = time::OffsetDateTime::now_utc().date();
    let month = format!("{:04}-{:02}", today.year(), u8::from(today.month()));
    let expected = month.clone();
    h.llm.respond_with(move |req| {
        let event = last_contact_text(req);
        match (agent_of(req), tool_result(req)) {
            ("forecaster", None) => {
                assert!(event.starts_with("CRM event: forecast_due"), "{event}");
                assert!(event.contains("سبائك ٢٥٠ غرام") && event.contains("طقم عيار ٢١"), "{event}");
                Reply::ToolCalls(vec![call(
                    "write_forecast",
                    json!({"period": expected, "amount": 95_000, "currency": "SAR",
                           "reasons": "صفقة السبائك في مرحلة التفاوض واحتمالها مرتفع؛ الطقم ما زال في التأهيل"}),
                )])
            }
            ("forecaster", Some(_)) => Reply::Text("done".into()),
            (agent, result) => panic!("unexpected request for {agent}: {result:?}"),
        }
    });
    let manager = h.app.token(h.tenant, Role::SalesManager);
    let close = format!("{month}-28");
    for (title, amount) in [("سبائك ٢٥٠ غرام", 9_000_000), ("طقم عيار ٢١", 3_000_000)]
    {
        created(
            &h,
            &manager,
            "/api/v1/deals",
            json!({"title": title, "amount_minor": amount, "currency": "SAR", "expected_close_date": close}),
        )
        .await;
    }
    // The dispatcher's timer writes the day's events; here the test is the timer.
    let pool = &h.app.test_db.db().app;
    assert_eq!(runtime::events::schedule_forecasts(pool).await.unwrap(), 1);
    wait_for_count(
        &h.app,
        "SELECT count(*) FROM forecasts",
        |n| n == 1,
        "the forecaster writes its forecast",
    )
    .await;
    assert_eq!(runtime::events::schedule_forecasts(pool).await.unwrap(), 0);

    let next = if today.month() == time::Month::December {
        format!("{:04}-01-01", today.year() + 1)
    } else {
        format!("{:04}-{:02}-01", today.year(), u8::from(today.month()) + 1)
    };
    let forecast = h
        .app
        .get_json(
            &format!("/api/v1/deals/forecast?from={month}-01&to={next}"),
            &manager,
        )
        .await;
    let row = &forecast["items"][0];
    assert_eq!(row["currency"], "SAR");
    assert_eq!(row["pipeline_minor"], 12_000_000);
    assert_eq!(row["agent_forecast"]["amount_minor"], 9_500_000);
    assert_eq!(
        row["agent_forecast"]["reasons"],
        "صفقة السبائك في مرحلة التفاوض واحتمالها مرتفع؛ الطقم ما زال في التأهيل"
    );
}

/// A deal won (REST) gets its commission lines computed by rule; the commission agent reviews them
/// on the event: the owner's line, within its rule's threshold, is approved; the affiliate's, over
/// its threshold, waits for a manager, whose approval approves it.
#[tokio::test]
async fn a_won_deals_commissions_are_approved_within_the_threshold_and_wait_above_it() {
    let h = harness().await;
    let rep = sales_rep(&h).await;
    h.llm.respond_with(|req| {
        let event = last_contact_text(req);
        match (agent_of(req), tool_result(req)) {
            ("commission", None) => {
                assert!(event.starts_with("CRM event: deal_won"), "{event}");
                Reply::ToolCalls(vec![call(
                    "approve_commissions",
                    json!({"note": "٥٪ للمسوق و١٪ للمندوب على ١٠٠ ألف ريال"}),
                )])
            }
            ("commission", Some(_)) => Reply::Text("done".into()),
            (agent, result) => panic!("unexpected request for {agent}: {result:?}"),
        }
    });
    let manager = h.app.user_token(h.tenant, Role::SalesManager).await;
    let affiliate = created(
        &h,
        &manager,
        "/api/v1/affiliates",
        json!({"display_name": "نورة"}),
    )
    .await;
    for rule in [
        json!({"name": "المسوقون", "beneficiary": "affiliate", "currency": "SAR",
               "tiers": [{"from_minor": 0, "rate_bps": 500}], "approval_threshold_minor": 300_000}),
        json!({"name": "المندوبون", "beneficiary": "owner", "currency": "SAR",
               "tiers": [{"from_minor": 0, "rate_bps": 100}], "approval_threshold_minor": 1_000_000}),
    ] {
        created(&h, &manager, "/api/v1/commission-rules", rule).await;
    }
    let deal = created(
        &h,
        &manager,
        "/api/v1/deals",
        json!({"title": "سبائك ١ كغ", "amount_minor": 10_000_000, "currency": "SAR",
               "affiliate_id": affiliate["id"], "owner_user_id": rep.0}),
    )
    .await;
    let won = stage_where(&h, &manager, "kind", "won").await;
    move_deal(&h, &manager, &deal, &won).await;
    wait_for_count(
        &h.app,
        "SELECT count(*) FROM agent_events WHERE agent = 'commission' AND status = 'done'",
        |n| n == 1,
        "the commission agent reviews the deal",
    )
    .await;

    let statuses = async || -> Vec<(i64, String)> {
        let list = h.app.get_json("/api/v1/commissions", &manager).await;
        let mut lines: Vec<(i64, String)> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["amount_minor"].as_i64().unwrap(),
                    c["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(
        statuses().await,
        [
            (100_000, "approved".to_owned()),
            (500_000, "pending".to_owned())
        ]
    );
    let approval = &pending_approval(&h, &manager).await;
    assert_eq!(approval["kind"], "commission_change");
    assert_eq!(approval["subject_type"], "commission");
    assert_eq!(approval["amount_minor"], 500_000);
    assert_eq!(approval["agent"], "commission");
    approve(&h, &manager, approval).await;
    assert_eq!(
        statuses().await,
        [
            (100_000, "approved".to_owned()),
            (500_000, "approved".to_owned())
        ]
    );
}

/// A contact who wants to think it over: sales hands them to the follow-up agent, which schedules
/// a follow-up in three days (REST: the conversation's `next_follow_up_at`). When it is due, the
/// follow-up agent writes first, with the note: an approved WhatsApp template (what the Graph API
/// accepts outside the 24-hour window) then a line, and schedules one more; the contact writing
/// first cancels that one.
#[tokio::test]
async fn a_scheduled_follow_up_comes_back_to_the_contact_unless_they_write_first() {
    let h = harness().await;
    let phone = "966500000340";
    qualified_lead(&h, phone, "ريم").await;
    h.llm.respond_with(|req| {
        let said = last_contact_text(req);
        let timer = system_of(req).contains("A follow-up you scheduled is due");
        match (agent_of(req), tool_result(req)) {
            ("scorer" | "router", _) => Reply::Text("-".into()),
            ("sales", None) => Reply::ToolCalls(vec![call(
                "handoff",
                json!({"to_agent": "follow_up", "reason": "العميلة تريد التفكير قبل الشراء"}),
            )]),
            ("follow_up", None) if timer => {
                assert!(
                    system_of(req).contains("اسألها عن قرارها"),
                    "the note is given"
                );
                Reply::ToolCalls(vec![
                    call(
                        "send_template",
                        json!({"template": "follow_up_ar", "language": "ar", "parameters": ["ريم"]}),
                    ),
                    call(
                        "schedule_follow_up",
                        json!({"in_days": 7, "note": "آخر متابعة"}),
                    ),
                ])
            }
            ("follow_up", Some(_)) if timer => {
                Reply::Text("مرحبًا ريم، حبيت أطمن عليك بخصوص طقم عيار ٢١، هل ما زلتِ مهتمة؟".into())
            }
            ("follow_up", None) if said.contains("لسه") => {
                Reply::Text("خذي راحتك يا ريم".into())
            }
            ("follow_up", None) => Reply::ToolCalls(vec![call(
                "schedule_follow_up",
                json!({"in_days": 3, "note": "اسألها عن قرارها بخصوص طقم عيار ٢١"}),
            )]),
            ("follow_up", Some(_)) => {
                Reply::Text("تمام يا ريم، خذي وقتك وسأتواصل معك بعد ٣ أيام".into())
            }
            (agent, result) => panic!("unexpected request for {agent}: {result:?}"),
        }
    });
    h.app
        .post_whatsapp(&notification(&[text("f1", phone, "خليني أفكر وأرجع لك")]))
        .await;
    h.graph.wait_for_delivered(1, WAIT).await;
    let manager = h.app.token(h.tenant, Role::SalesManager);
    let list = h.app.get_json("/api/v1/conversations", &manager).await;
    let conversation = &list["items"][0];
    let due = time::OffsetDateTime::parse(
        conversation["next_follow_up_at"]
            .as_str()
            .expect("a follow-up is scheduled"),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let ahead = due - time::OffsetDateTime::now_utc();
    assert!(
        ahead > time::Duration::days(2) && ahead <= time::Duration::days(3),
        "{ahead}"
    );

    // Three days pass.
    sqlx::query("UPDATE follow_ups SET due_at = now() WHERE status = 'pending'")
        .execute(&h.app.test_db.db().admin)
        .await
        .unwrap();
    let sent = h.graph.wait_for_delivered(3, WAIT).await;
    let template = &sent[1].body;
    assert_eq!(template["type"], "template");
    assert_eq!(template["to"], phone);
    assert_eq!(template["template"]["name"], "follow_up_ar");
    assert_eq!(template["template"]["language"]["code"], "ar");
    assert_eq!(
        template["template"]["components"][0]["parameters"][0],
        json!({"type": "text", "text": "ريم"})
    );
    assert_eq!(
        sent[2].body["text"]["body"],
        "مرحبًا ريم، حبيت أطمن عليك بخصوص طقم عيار ٢١، هل ما زلتِ مهتمة؟"
    );
    assert_eq!(
        h.app
            .count("SELECT count(*) FROM messages WHERE kind = 'template' AND status = 'sent'")
            .await,
        1
    );
    assert_eq!(
        h.app
            .count("SELECT count(*) FROM follow_ups WHERE status = 'pending'")
            .await,
        1
    );

    // The contact answers before the next one: it is cancelled.
    h.app
        .post_whatsapp(&notification(&[text("f2", phone, "لسه ما قررت")]))
        .await;
    h.graph.wait_for_delivered(4, WAIT).await;
    let statuses: Vec<String> =
        sqlx::query_scalar("SELECT status FROM follow_ups ORDER BY created_at")
            .fetch_all(&h.app.test_db.db().admin)
            .await
            .unwrap();
    assert_eq!(statuses, ["done", "cancelled"]);
    let list = h.app.get_json("/api/v1/conversations", &manager).await;
    assert!(list["items"][0]["next_follow_up_at"].is_null());
}

/// Background agents run beside live conversations, in the same runtime: intake, answering a
/// WhatsApp message in Arabic, creates a lead; the event dispatcher takes up its event while the
/// conversation goes on — the scorer scores the lead and the router assigns it to a rep — and the
/// contact's next message is answered by the qualifier. Conversation turns and event turns are
/// each audited where they belong; nothing the background agents did reached the contact.
#[tokio::test]
async fn background_agents_react_while_the_conversation_goes_on() {
    let h = harness().await;
    let rep = sales_rep(&h).await;
    h.llm.respond_with(|req| match (agent_of(req), tool_result(req)) {
        ("intake", None) => Reply::ToolCalls(vec![call(
            "create_lead",
            json!({"name": "عبدالله", "need": "سبائك ذهب عيار ٢٤ للاستثمار", "territory": "الرياض"}),
        )]),
        ("intake", Some(_)) => Reply::Text("أهلًا عبدالله، سجّلنا طلبك وسنكمل معك الآن".into()),
        ("scorer", None) => Reply::ToolCalls(vec![call(
            "set_lead_score",
            json!({"score": 80, "reasons": [{"reason": "يريد سبائك للاستثمار", "points": 80}]}),
        )]),
        ("router", None) => Reply::ToolCalls(vec![call(
            "assign_lead",
            json!({"reason": "score 80, Riyadh"}),
        )]),
        ("scorer" | "router", Some(_)) => Reply::Text("done".into()),
        ("qualifier", None) => Reply::Text("كم الميزانية التقريبية، ومتى تنوي الشراء؟".into()),
        (agent, result) => panic!("unexpected request for {agent}: {result:?}"),
    });
    let phone = "966500000377";
    h.app
        .post_whatsapp(&notification(&[text(
            "wamid.live-1",
            phone,
            "السلام عليكم، أبحث عن سبائك ذهب عيار ٢٤ للاستثمار",
        )]))
        .await;
    h.graph.wait_for_delivered(1, WAIT).await;
    wait_for_count(
        &h.app,
        "SELECT count(*) FROM leads WHERE owner_user_id IS NOT NULL AND score = 80",
        |n| n == 1,
        "the scorer scores the new lead and the router assigns it",
    )
    .await;
    h.app
        .post_whatsapp(&notification(&[text(
            "wamid.live-2",
            phone,
            "ما هي الخطوة التالية؟",
        )]))
        .await;
    let sent = h.graph.wait_for_delivered(2, WAIT).await;
    let texts: Vec<&str> = sent
        .iter()
        .map(|s| s.body["text"]["body"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        [
            "أهلًا عبدالله، سجّلنا طلبك وسنكمل معك الآن",
            "كم الميزانية التقريبية، ومتى تنوي الشراء؟"
        ]
    );

    let manager = h.app.token(h.tenant, Role::SalesManager);
    let leads = h.app.get_json("/api/v1/leads", &manager).await;
    let lead = &leads["items"][0];
    assert_eq!(lead["score"], 80);
    assert_eq!(lead["owner_user_id"], rep.0.to_string());
    assert_eq!(lead["source"], "whatsapp");

    // The conversation's turns and the events' turns, each audited on its own subject.
    let turns: Vec<(String, bool)> = sqlx::query_as(
        "SELECT agent, conversation_id IS NOT NULL FROM ai_conversations ORDER BY created_at",
    )
    .fetch_all(&h.app.test_db.db().admin)
    .await
    .unwrap();
    let in_conversation: Vec<&str> = turns
        .iter()
        .filter(|(_, c)| *c)
        .map(|(a, _)| a.as_str())
        .collect();
    let on_events: Vec<&str> = turns
        .iter()
        .filter(|(_, c)| !*c)
        .map(|(a, _)| a.as_str())
        .collect();
    assert_eq!(in_conversation, ["intake", "qualifier"]);
    assert_eq!(on_events, ["scorer", "router"]);
    assert_eq!(
        h.graph.delivered().len(),
        2,
        "background agents sent nothing"
    );
}
