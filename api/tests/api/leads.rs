//! Leads through the REST API: the status rules, validation, pagination and the audit log.

use serde_json::{Value, json};

use crate::helpers::{error_code, spawn_app};
use api::auth::Role;

async fn create(app: &crate::helpers::TestApp, token: &str, body: Value) -> Value {
    let response = app
        .send("post", "/api/v1/leads", Some(token), Some(&body))
        .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    response.json().await.unwrap()
}

async fn patch(
    app: &crate::helpers::TestApp,
    token: &str,
    id: &str,
    body: Value,
) -> reqwest::Response {
    app.send(
        "patch",
        &format!("/api/v1/leads/{id}"),
        Some(token),
        Some(&body),
    )
    .await
}

/// new → contacted → qualified → converted; anything else is a 409 that names the legal moves;
/// disqualifying needs a reason; every change is in the audit log with who made it.
#[tokio::test]
async fn a_lead_moves_forward_only_and_every_change_is_audited() {
    let app = spawn_app().await;
    let tenant = app.test_db.tenant("riyadh-gold").await;
    let token = app.token(tenant, Role::SalesRep);
    let lead = create(
        &app,
        &token,
        json!({"source": "whatsapp", "territory": "الرياض", "qualification": {"interest": "سبائك ذهب"}}),
    )
    .await;
    assert_eq!(lead["status"], "new");
    assert_eq!(lead["territory"], "الرياض", "Arabic round-trips");
    assert_eq!(lead["qualification"]["interest"], "سبائك ذهب");
    let id = lead["id"].as_str().unwrap();

    let skip = patch(&app, &token, id, json!({"status": "converted"})).await;
    assert_eq!(skip.status(), 409);
    let message = skip.json::<Value>().await.unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        message,
        "a new lead can move to contacted or disqualified, not to converted"
    );

    for status in ["contacted", "qualified", "converted"] {
        let r = patch(&app, &token, id, json!({"status": status})).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap()["status"], status);
    }
    let back = patch(&app, &token, id, json!({"status": "qualified"})).await;
    assert_eq!(error_code(back, 409).await, "conflict");

    // Disqualifying: only from an open state, and only with a reason.
    let other = create(&app, &token, json!({"source": "web"})).await;
    let other_id = other["id"].as_str().unwrap();
    let no_reason = patch(&app, &token, other_id, json!({"status": "disqualified"})).await;
    assert_eq!(error_code(no_reason, 422).await, "invalid");
    let r = patch(
        &app,
        &token,
        other_id,
        json!({"status": "disqualified", "disqualified_reason": "خارج نطاق الخدمة"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["disqualified_reason"], "خارج نطاق الخدمة");

    // 1 creation + 3 moves for the first lead; rejected moves left nothing behind.
    let audited: Vec<(String, String, Option<Value>, Value)> = sqlx::query_as(
        "SELECT action, actor_role, before, after FROM audit_log WHERE entity = 'lead' AND entity_id = $1::uuid ORDER BY at, id",
    )
    .bind(id)
    .fetch_all(&app.test_db.db().admin)
    .await
    .unwrap();
    assert_eq!(audited.len(), 4);
    assert_eq!(audited[0].0, "create");
    assert!(audited[0].2.is_none());
    assert!(audited.iter().all(|a| a.1 == "sales_rep"));
    assert_eq!(audited[3].2.as_ref().unwrap()["status"], "qualified");
    assert_eq!(audited[3].3["status"], "converted");
}

/// Invalid values, unknown fields (a `tenant_id` above all), unknown enum values and malformed
/// JSON are rejected with a clear error, and nothing is stored.
#[tokio::test]
async fn bad_lead_input_is_rejected_and_changes_nothing() {
    let app = spawn_app().await;
    let tenant = app.test_db.tenant("riyadh-gold").await;
    let other = app.test_db.tenant("jeddah-gold").await;
    let token = app.token(tenant, Role::SalesManager);
    for (body, status, code) in [
        (json!({"score": 101}), 422, "invalid"),
        (json!({"score": -1}), 422, "invalid"),
        (json!({"source": "carrier-pigeon"}), 422, "invalid"),
        (json!({"tenant_id": other.0}), 422, "invalid"),
        (json!({"qualification": [1, 2]}), 422, "invalid"),
        (json!({"sector": ""}), 422, "invalid"),
        (json!({"contact_id": "not-a-uuid"}), 422, "invalid"),
        (
            json!({"owner_user_id": uuid::Uuid::new_v4()}),
            422,
            "invalid",
        ),
    ] {
        let r = app
            .send("post", "/api/v1/leads", Some(&token), Some(&body))
            .await;
        assert_eq!(error_code(r, status).await, code, "{body}");
    }
    let malformed = app
        .client
        .post(app.url("/api/v1/leads"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{\"source\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(malformed, 400).await, "malformed");
    assert_eq!(app.count("SELECT count(*) FROM leads").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM audit_log").await, 0);

    let lead = create(&app, &token, json!({})).await;
    let id = lead["id"].as_str().unwrap();
    assert_eq!(lead["source"], "manual", "the default source");
    for body in [
        json!({"status": "won"}),
        json!({"score": 1000}),
        json!({"tenant_id": other.0}),
        json!({"disqualified_reason": "no status change"}),
    ] {
        let r = patch(&app, &token, id, body.clone()).await;
        assert_eq!(error_code(r, 422).await, "invalid", "{body}");
    }
    let unchanged: Value = app
        .get(&format!("/api/v1/leads/{id}"), Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(unchanged, lead);
    // A path id that is not a UUID is simply not found; an unknown query value is a clear 400.
    let r = app.get("/api/v1/leads/123", Some(&token)).await;
    assert_eq!(error_code(r, 404).await, "not_found");
    let r = app.get("/api/v1/leads?status=won", Some(&token)).await;
    assert_eq!(error_code(r, 400).await, "malformed");
}

/// Lists run newest first in pages joined by cursors, with filters, and `null` clears a field.
#[tokio::test]
async fn lists_filter_and_paginate_newest_first() {
    let app = spawn_app().await;
    let tenant = app.test_db.tenant("riyadh-gold").await;
    let token = app.token(tenant, Role::Admin);
    let owner = app
        .test_db
        .user(
            tenant,
            "rep@example.com",
            Role::SalesRep,
            "long enough password",
        )
        .await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let body = if i % 2 == 0 {
            json!({"source": "referral", "owner_user_id": owner.0})
        } else {
            json!({"source": "web"})
        };
        ids.push(
            create(&app, &token, body).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..5 {
        let path = match &cursor {
            Some(c) => format!("/api/v1/leads?limit=2&cursor={c}"),
            None => "/api/v1/leads?limit=2".to_owned(),
        };
        let page: Value = app.get(&path, Some(&token)).await.json().await.unwrap();
        for item in page["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    let owned: Value = app
        .get(
            &format!("/api/v1/leads?owner_user_id={}", owner.0),
            Some(&token),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(owned["items"].as_array().unwrap().len(), 3);
    let web: Value = app
        .get("/api/v1/leads?source=web&status=new", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(web["items"].as_array().unwrap().len(), 2);

    let r = patch(
        &app,
        &token,
        &ids[0],
        json!({"owner_user_id": null, "score": 70}),
    )
    .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["owner_user_id"], Value::Null);
    assert_eq!(body["score"], 70);
    let r = app.get("/api/v1/leads?cursor=garbage", Some(&token)).await;
    assert_eq!(error_code(r, 400).await, "malformed");
}

/// The audit log is readable by admins and managers, filtered by record or by who changed it.
#[tokio::test]
async fn the_audit_log_says_who_changed_what() {
    let app = spawn_app().await;
    let tenant = app.test_db.tenant("riyadh-gold").await;
    let rep = app.user_token(tenant, Role::SalesRep).await;
    let manager = app.user_token(tenant, Role::SalesManager).await;
    let lead = create(&app, &rep, json!({"source": "web"})).await;
    let id = lead["id"].as_str().unwrap();
    let r = patch(&app, &manager, id, json!({"status": "contacted"})).await;
    assert_eq!(r.status(), 200);
    create(&app, &manager, json!({"source": "sms"})).await;

    let history = app
        .get_json(
            &format!("/api/v1/audit-log?entity=lead&entity_id={id}"),
            &manager,
        )
        .await;
    let entries = history["items"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["action"], "update", "newest first");
    assert_eq!(entries[0]["actor_role"], "sales_manager");
    assert_eq!(entries[0]["before"]["status"], "new");
    assert_eq!(entries[0]["after"]["status"], "contacted");
    assert_eq!(entries[1]["action"], "create");
    assert_eq!(entries[1]["actor_role"], "sales_rep");
    assert!(entries[1]["actor_user_id"].is_string());
    let by_rep = app
        .get_json(
            &format!(
                "/api/v1/audit-log?actor_user_id={}",
                entries[1]["actor_user_id"].as_str().unwrap()
            ),
            &manager,
        )
        .await;
    assert_eq!(by_rep["items"].as_array().unwrap().len(), 1);
    let r = app.get("/api/v1/audit-log", Some(&rep)).await;
    assert_eq!(error_code(r, 403).await, "forbidden");
}

/// Assignment picks, among reps whose sectors and territories match (empty: any), the one with
/// the fewest open leads; a lead with an active affiliate's referral code is attributed to them.
#[tokio::test]
async fn leads_go_to_the_matching_rep_with_the_least_load() {
    let app = spawn_app().await;
    let tenant = app.test_db.tenant("riyadh-gold").await;
    let manager = app.user_token(tenant, Role::SalesManager).await;
    let rep = |email: &'static str| {
        let app = &app;
        async move {
            app.test_db
                .user(tenant, email, Role::SalesRep, "long enough password")
                .await
        }
    };
    let (riyadh, jeddah, anywhere) = (
        rep("riyadh@example.com").await,
        rep("jeddah@example.com").await,
        rep("any@example.com").await,
    );
    let off = rep("off@example.com").await;
    for (user, body) in [
        (
            riyadh,
            json!({"territories": ["الرياض"], "sectors": ["retail"]}),
        ),
        (jeddah, json!({"territories": ["جدة"]})),
        (off, json!({"accepts_leads": false})),
    ] {
        let r = app
            .send(
                "put",
                &format!("/api/v1/users/{}/sales-profile", user.0),
                Some(&manager),
                Some(&body),
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    let assign = |territory: &'static str, sector: &'static str| {
        let (app, manager) = (&app, &manager);
        async move {
            let lead = create(
                app,
                manager,
                json!({"territory": territory, "sector": sector}),
            )
            .await;
            let r = app
                .send(
                    "post",
                    &format!("/api/v1/leads/{}/assign", lead["id"].as_str().unwrap()),
                    Some(manager),
                    None,
                )
                .await;
            let body: Value = r.json().await.unwrap();
            body["owner_user_id"].as_str().map(str::to_owned)
        }
    };
    // Riyadh retail: the Riyadh rep and the any-territory rep match; each gets one in turn.
    let first = assign("الرياض", "retail").await.unwrap();
    let second = assign("الرياض", "retail").await.unwrap();
    let mut got = vec![first, second];
    got.sort();
    let mut expected = vec![riyadh.0.to_string(), anywhere.0.to_string()];
    expected.sort();
    assert_eq!(got, expected, "the load is balanced");
    // Jeddah: the Jeddah rep and the any rep; the any rep has one open lead already.
    assert_eq!(
        assign("جدة", "wholesale").await.unwrap(),
        jeddah.0.to_string()
    );
    // Dammam wholesale: only the any rep matches (the Riyadh rep is retail-only and in Riyadh).
    assert_eq!(
        assign("الدمام", "wholesale").await.unwrap(),
        anywhere.0.to_string()
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM leads WHERE owner_user_id = '{}'",
            off.0
        ))
        .await,
        0
    );

    // No rep at all for a tenant without reps: 409.
    let other = app.test_db.tenant("jeddah-gold").await;
    let other_manager = app.user_token(other, Role::SalesManager).await;
    let lead = create(&app, &other_manager, json!({})).await;
    let r = app
        .send(
            "post",
            &format!("/api/v1/leads/{}/assign", lead["id"].as_str().unwrap()),
            Some(&other_manager),
            None,
        )
        .await;
    assert_eq!(error_code(r, 409).await, "conflict");

    // Referral codes attribute leads to active affiliates only.
    let affiliate = app
        .send(
            "post",
            "/api/v1/affiliates",
            Some(&manager),
            Some(&json!({"display_name": "شريك", "referral_code": "REF2026"})),
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    let r = app
        .send(
            "post",
            "/api/v1/leads",
            Some(&manager),
            Some(&json!({"referral_code": "REF2026"})),
        )
        .await;
    assert_eq!(
        error_code(r, 422).await,
        "invalid",
        "the affiliate is not active yet"
    );
    let path = format!("/api/v1/affiliates/{}", affiliate["id"].as_str().unwrap());
    for body in [
        json!({"status": "approved"}),
        json!({"status": "onboarding"}),
        json!({"steps_done": ["contract", "training", "payout_details"], "status": "active"}),
    ] {
        assert_eq!(
            app.send("patch", &path, Some(&manager), Some(&body))
                .await
                .status(),
            200
        );
    }
    let referred = create(
        &app,
        &manager,
        json!({"referral_code": "ref2026", "source": "referral"}),
    )
    .await;
    assert_eq!(referred["affiliate_id"], affiliate["id"]);
}
