//! Affiliates and commissions through the REST API: the affiliate's path to active, and the
//! commissions a won deal earns, with exact amounts (tiers and rounding) and payouts per month.

use api::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_code, spawn_app};

async fn post(app: &TestApp, token: &str, path: &str, body: Value) -> Value {
    let r = app.send("post", path, Some(token), Some(&body)).await;
    assert_eq!(r.status(), 201, "{path}: {}", r.text().await.unwrap());
    r.json().await.unwrap()
}

async fn patch(app: &TestApp, token: &str, path: &str, body: Value) -> reqwest::Response {
    app.send("patch", path, Some(token), Some(&body)).await
}

/// applied → approved → onboarding → active only once every step is done; rejected is final.
#[tokio::test]
async fn an_affiliate_becomes_active_only_after_onboarding() {
    let app = spawn_app().await;
    let tenant = app.test_db.tenant("riyadh-gold").await;
    let token = app.user_token(tenant, Role::SalesManager).await;
    let a = post(
        &app,
        &token,
        "/api/v1/affiliates",
        json!({"display_name": "مجوهرات الخليج", "referral_code": "gulf24"}),
    )
    .await;
    assert_eq!(a["status"], "applied");
    assert_eq!(a["referral_code"], "GULF24");
    let path = format!("/api/v1/affiliates/{}", a["id"].as_str().unwrap());

    let r = patch(&app, &token, &path, json!({"status": "active"})).await;
    assert_eq!(error_code(r, 409).await, "conflict");
    for status in ["approved", "onboarding"] {
        assert_eq!(
            patch(&app, &token, &path, json!({"status": status}))
                .await
                .status(),
            200
        );
    }
    let r = patch(&app, &token, &path, json!({"status": "active"})).await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "onboarding is not finished: contract, training, payout_details"
    );
    let r = patch(
        &app,
        &token,
        &path,
        json!({"steps_done": ["contract", "training", "payout_details"], "status": "active"}),
    )
    .await;
    let active: Value = r.json().await.unwrap();
    assert_eq!(active["status"], "active");
    assert!(
        active["onboarding"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["done_at"].is_string())
    );
    for (status, code) in [("suspended", 200), ("active", 200), ("applied", 409)] {
        assert_eq!(
            patch(&app, &token, &path, json!({"status": status}))
                .await
                .status()
                .as_u16(),
            code,
            "{status}"
        );
    }
    let r = patch(&app, &token, &path, json!({"steps_done": ["lunch"]})).await;
    assert_eq!(error_code(r, 422).await, "invalid");
    let r = app
        .send(
            "post",
            "/api/v1/affiliates",
            Some(&token),
            Some(&json!({"display_name": "آخر", "referral_code": "GULF24"})),
        )
        .await;
    assert_eq!(
        error_code(r, 409).await,
        "conflict",
        "referral codes are unique"
    );
    let rep = app.user_token(tenant, Role::SalesRep).await;
    let r = app.get("/api/v1/affiliates", Some(&rep)).await;
    assert_eq!(error_code(r, 403).await, "forbidden");
}

/// A won deal earns its affiliate and its owner a commission each, under the most specific rule,
/// exactly once; payouts sum them per month and currency.
#[tokio::test]
async fn a_won_deal_earns_exact_commissions_once() {
    let app = spawn_app().await;
    let tenant = app.test_db.tenant("riyadh-gold").await;
    let manager = app.user_token(tenant, Role::SalesManager).await;
    let owner = app
        .test_db
        .user(
            tenant,
            "rep@example.com",
            Role::SalesRep,
            "long enough password",
        )
        .await;
    let a = post(
        &app,
        &manager,
        "/api/v1/affiliates",
        json!({"display_name": "شريك"}),
    )
    .await;
    let other = post(
        &app,
        &manager,
        "/api/v1/affiliates",
        json!({"display_name": "شريك آخر"}),
    )
    .await;
    // For all affiliates: 2.5 %. For `a`: 5 % up to 100,000.00 SAR, 7 % above. Owners: 1 %.
    for body in [
        json!({"name": "عام", "beneficiary": "affiliate", "currency": "SAR", "tiers": [{"from_minor": 0, "rate_bps": 250}]}),
        json!({"name": "خاص", "beneficiary": "affiliate", "affiliate_id": a["id"], "currency": "SAR",
               "tiers": [{"from_minor": 0, "rate_bps": 500}, {"from_minor": 10_000_000, "rate_bps": 700}]}),
        json!({"name": "الموظف", "beneficiary": "owner", "currency": "SAR", "tiers": [{"from_minor": 0, "rate_bps": 100}]}),
    ] {
        post(&app, &manager, "/api/v1/commission-rules", body).await;
    }
    let stages = app.get_json("/api/v1/pipeline/stages", &manager).await;
    let won = stages["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "won")
        .unwrap()["id"]
        .clone();
    let win = async |amount: i64, affiliate: &Value, owner: Option<uuid::Uuid>| {
        let deal = post(&app, &manager, "/api/v1/deals", json!({"title": "صفقة", "amount_minor": amount, "currency": "SAR",
                                                              "affiliate_id": affiliate["id"], "owner_user_id": owner})).await;
        let r = patch(
            &app,
            &manager,
            &format!("/api/v1/deals/{}", deal["id"].as_str().unwrap()),
            json!({"stage_id": won}),
        )
        .await;
        assert_eq!(r.status(), 200);
    };
    // 150,000.00 SAR: a gets 5,000.00 + 3,500.00 = 8,500.00; the owner 1,500.00.
    win(15_000_000, &a, Some(owner.0)).await;
    // 100,000.01 SAR: a gets 5,000.00 + 0.0007 → 5,000.00 (rounded once, not per tier).
    win(10_000_001, &a, None).await;
    // 0.30 SAR through the other affiliate at 2.5 %: 0.75 halala → 1 halala.
    win(30, &other, None).await;

    let period = {
        let now = time::OffsetDateTime::now_utc();
        format!("{:04}-{:02}-01", now.year(), u8::from(now.month()))
    };
    let list = app
        .get_json(&format!("/api/v1/commissions?period={period}"), &manager)
        .await;
    let mut amounts: Vec<i64> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["amount_minor"].as_i64().unwrap())
        .collect();
    amounts.sort_unstable();
    assert_eq!(amounts, [1, 150_000, 500_000, 850_000]);

    let payouts = app
        .get_json(
            &format!("/api/v1/commissions/payouts?period={period}"),
            &manager,
        )
        .await;
    let rows: Vec<(Value, Value, i64, i64)> = payouts["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["affiliate_id"].clone(),
                p["user_id"].clone(),
                p["commissions"].as_i64().unwrap(),
                p["amount_minor"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (a["id"].clone(), Value::Null, 2, 1_350_000),
            (Value::Null, json!(owner.0), 1, 150_000),
            (other["id"].clone(), Value::Null, 1, 1),
        ]
    );
    // A commission is approved, then paid; nothing else.
    let one = list["items"][0]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/commissions/{one}");
    let r = patch(&app, &manager, &path, json!({"status": "paid"})).await;
    assert_eq!(error_code(r, 409).await, "conflict", "approved before paid");
    for status in ["approved", "paid"] {
        let r = patch(&app, &manager, &path, json!({"status": status})).await;
        assert_eq!(r.json::<Value>().await.unwrap()["status"], status);
    }
    let r = patch(&app, &manager, &path, json!({"status": "pending"})).await;
    assert_eq!(error_code(r, 409).await, "conflict", "paid is final");
    let r = app
        .get(
            "/api/v1/commissions/payouts?period=2026-11-15",
            Some(&manager),
        )
        .await;
    assert_eq!(error_code(r, 422).await, "invalid");
    for body in [
        json!({"name": "x", "beneficiary": "owner", "currency": "SAR", "tiers": [{"from_minor": 5, "rate_bps": 100}]}),
        json!({"name": "x", "beneficiary": "owner", "currency": "SAR", "tiers": [{"from_minor": 0, "rate_bps": 10_001}]}),
        json!({"name": "x", "beneficiary": "owner", "currency": "SAR", "tiers": [{"from_minor": 0, "rate_bps": 1.5}]}),
        json!({"name": "x", "beneficiary": "owner", "affiliate_id": a["id"], "currency": "SAR", "tiers": [{"from_minor": 0, "rate_bps": 100}]}),
        json!({"name": "x", "beneficiary": "partner", "currency": "SAR", "tiers": [{"from_minor": 0, "rate_bps": 100}]}),
    ] {
        let r = app
            .send(
                "post",
                "/api/v1/commission-rules",
                Some(&manager),
                Some(&body),
            )
            .await;
        assert_eq!(error_code(r, 422).await, "invalid", "{body}");
    }
}
