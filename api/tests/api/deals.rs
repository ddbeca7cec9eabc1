//! Deals through the REST API: money in minor units, the forecast and pipeline summary with exact
//! expected values (the rounding rule included), stage history, and closed deals.

use api::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_code, spawn_app};

async fn stages(app: &TestApp, token: &str) -> Vec<(String, String)> {
    let body: Value = app.get_json("/api/v1/pipeline/stages", token).await;
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn deal(app: &TestApp, token: &str, body: Value) -> Value {
    let r = app
        .send("post", "/api/v1/deals", Some(token), Some(&body))
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    r.json().await.unwrap()
}

/// Weighted = Σ(amount_minor × probability) / 100 per period and currency, rounded half away
/// from zero once per row; won, lost, undated and out-of-range deals are not forecast.
#[tokio::test]
async fn forecast_and_summary_are_exact_in_minor_units() {
    let app = spawn_app().await;
    let tenant = app.test_db.tenant("riyadh-gold").await;
    let token = app.token(tenant, Role::SalesManager);
    let stage: std::collections::HashMap<String, String> =
        stages(&app, &token).await.into_iter().collect();
    let names: Vec<String> = stages(&app, &token)
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        ["qualification", "proposal", "negotiation", "won", "lost"]
    );

    let body = |title: &str, amount: i64, currency: &str, st: &str, date: Option<&str>| {
        json!({"title": title, "amount_minor": amount, "currency": currency,
               "stage_id": stage[st], "expected_close_date": date})
    };
    for (title, amount, currency, st, date) in [
        // December 2026, SAR: 86,419,690 + 50 + 23,310 = 86,443,050 → 864,430.50 → 864,431.
        (
            "سبائك ١ كغ",
            1_234_567,
            "SAR",
            "negotiation",
            Some("2026-12-15"),
        ),
        ("خاتم", 5, "SAR", "qualification", Some("2026-12-20")),
        ("سوار", 333, "SAR", "negotiation", Some("2026-12-31")),
        // December 2026, USD: 999,999 × 40 = 39,999,960 → 399,999.60 → 400,000.
        (
            "Bullion (USD)",
            999_999,
            "USD",
            "proposal",
            Some("2026-12-01"),
        ),
        // January 2027, SAR: three times 5 × 10 = 150 → 1.50 → 2 (per deal it would be 3).
        ("عينة ١", 5, "SAR", "qualification", Some("2027-01-02")),
        ("عينة ٢", 5, "SAR", "qualification", Some("2027-01-15")),
        ("عينة ٣", 5, "SAR", "qualification", Some("2027-03-31")),
        // Not forecast: no date; on the range's end (exclusive).
        ("بلا موعد", 700, "SAR", "proposal", None),
        ("أبريل", 900, "SAR", "proposal", Some("2027-04-01")),
    ] {
        deal(&app, &token, body(title, amount, currency, st, date)).await;
    }
    // Won and lost deals are not forecast.
    let won = deal(
        &app,
        &token,
        body("مكسوبة", 10_000, "SAR", "negotiation", Some("2026-12-10")),
    )
    .await;
    let r = app
        .send(
            "patch",
            &format!("/api/v1/deals/{}", won["id"].as_str().unwrap()),
            Some(&token),
            Some(&json!({"stage_id": stage["won"]})),
        )
        .await;
    assert_eq!(r.status(), 200);

    let forecast: Value = app
        .get_json(
            "/api/v1/deals/forecast?from=2026-12-01&to=2027-04-01",
            &token,
        )
        .await;
    assert_eq!(
        forecast["items"],
        json!([
            {"period": "2026-12-01", "currency": "SAR", "deals": 3, "pipeline_minor": 1_234_905, "weighted_minor": 864_431, "agent_forecast": null},
            {"period": "2026-12-01", "currency": "USD", "deals": 1, "pipeline_minor": 999_999, "weighted_minor": 400_000, "agent_forecast": null},
            {"period": "2027-01-01", "currency": "SAR", "deals": 2, "pipeline_minor": 10, "weighted_minor": 1, "agent_forecast": null},
            {"period": "2027-03-01", "currency": "SAR", "deals": 1, "pipeline_minor": 5, "weighted_minor": 1, "agent_forecast": null},
        ])
    );
    let quarterly: Value = app
        .get_json(
            "/api/v1/deals/forecast?from=2026-12-01&to=2027-04-01&period=quarter",
            &token,
        )
        .await;
    assert_eq!(
        quarterly["items"],
        json!([
            {"period": "2026-10-01", "currency": "SAR", "deals": 3, "pipeline_minor": 1_234_905, "weighted_minor": 864_431, "agent_forecast": null},
            {"period": "2026-10-01", "currency": "USD", "deals": 1, "pipeline_minor": 999_999, "weighted_minor": 400_000, "agent_forecast": null},
            {"period": "2027-01-01", "currency": "SAR", "deals": 3, "pipeline_minor": 15, "weighted_minor": 2, "agent_forecast": null},
        ])
    );

    let summary: Value = app.get_json("/api/v1/deals/summary", &token).await;
    let rows: Vec<(String, Value, i64, i64, i64)> = summary["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["currency"].clone(),
                r["deals"].as_i64().unwrap(),
                r["amount_minor"].as_i64().unwrap(),
                r["weighted_minor"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            // 5 × 4 at 10 % = 200 → 2.
            ("qualification".into(), json!("SAR"), 4, 20, 2),
            // (700 + 900) × 40 = 64,000 → 640.
            ("proposal".into(), json!("SAR"), 2, 1_600, 640),
            ("proposal".into(), json!("USD"), 1, 999_999, 400_000),
            // (1,234,567 + 333) × 70 = 86,443,000 → 864,430.
            ("negotiation".into(), json!("SAR"), 2, 1_234_900, 864_430),
            ("won".into(), json!("SAR"), 1, 10_000, 10_000),
            ("lost".into(), Value::Null, 0, 0, 0),
        ]
    );

    let bad = app
        .get(
            "/api/v1/deals/forecast?from=2027-01-01&to=2026-01-01",
            Some(&token),
        )
        .await;
    assert_eq!(error_code(bad, 422).await, "invalid");
    let bad = app
        .get(
            "/api/v1/deals/forecast?from=2027-13-01&to=2028-01-01",
            Some(&token),
        )
        .await;
    assert_eq!(error_code(bad, 400).await, "malformed");
}

/// Moving a deal records the stage history; a won deal is closed and changes no more; money is
/// never a float, never negative, and always has an ISO currency.
#[tokio::test]
async fn stage_moves_are_recorded_and_closed_deals_do_not_change() {
    let app = spawn_app().await;
    let tenant = app.test_db.tenant("riyadh-gold").await;
    let token = app.token(tenant, Role::SalesRep);
    let stage: std::collections::HashMap<String, String> =
        stages(&app, &token).await.into_iter().collect();
    let d = deal(
        &app,
        &token,
        json!({"title": "سبيكة", "amount_minor": 250_000, "currency": "SAR"}),
    )
    .await;
    assert_eq!(
        d["stage_id"],
        stage["qualification"].as_str(),
        "the first open stage"
    );
    let path = format!("/api/v1/deals/{}", d["id"].as_str().unwrap());
    for st in ["proposal", "won"] {
        let r = app
            .send(
                "patch",
                &path,
                Some(&token),
                Some(&json!({"stage_id": stage[st]})),
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    let closed: Value = app.get(&path, Some(&token)).await.json().await.unwrap();
    assert!(closed["closed_at"].is_string());
    let r = app
        .send(
            "patch",
            &path,
            Some(&token),
            Some(&json!({"amount_minor": 1})),
        )
        .await;
    assert_eq!(error_code(r, 409).await, "conflict");
    let history: Vec<(Option<uuid::Uuid>, uuid::Uuid, String)> = sqlx::query_as(
        "SELECT from_stage_id, to_stage_id, actor_role FROM deal_stage_history ORDER BY at, id",
    )
    .fetch_all(&app.test_db.db().admin)
    .await
    .unwrap();
    let id = |name: &str| stage[name].parse::<uuid::Uuid>().unwrap();
    assert_eq!(
        history,
        vec![
            (None, id("qualification"), "sales_rep".to_owned()),
            (
                Some(id("qualification")),
                id("proposal"),
                "sales_rep".to_owned()
            ),
            (Some(id("proposal")), id("won"), "sales_rep".to_owned()),
        ]
    );

    let before = app.count("SELECT count(*) FROM deals").await;
    for body in [
        json!({"title": "x", "amount_minor": 12.5, "currency": "SAR"}),
        json!({"title": "x", "amount_minor": -1, "currency": "SAR"}),
        json!({"title": "x", "amount_minor": 1, "currency": "sar"}),
        json!({"title": "x", "amount_minor": 1, "currency": "SAUDI"}),
        json!({"title": "", "amount_minor": 1, "currency": "SAR"}),
        json!({"title": "x", "amount_minor": 1, "currency": "SAR", "stage_id": stage["won"]}),
        json!({"title": "x", "amount_minor": 1}),
    ] {
        let r = app
            .send("post", "/api/v1/deals", Some(&token), Some(&body))
            .await;
        assert_eq!(error_code(r, 422).await, "invalid", "{body}");
    }
    assert_eq!(app.count("SELECT count(*) FROM deals").await, before);
}

/// A tenant shapes its own pipeline: a new stage, a new probability that the summary uses at
/// once, and the rules a won or lost stage keeps.
#[tokio::test]
async fn a_tenant_edits_its_pipeline() {
    let app = spawn_app().await;
    let tenant = app.test_db.tenant("riyadh-gold").await;
    let manager = app.token(tenant, Role::SalesManager);
    let r = app
        .send(
            "post",
            "/api/v1/pipeline/stages",
            Some(&manager),
            Some(&json!({"name": "تجربة المنتج", "position": 10, "probability": 25})),
        )
        .await;
    assert_eq!(r.status(), 201);
    let stage: Value = r.json().await.unwrap();
    assert_eq!(stage["kind"], "open");
    let d = deal(
        &app,
        &manager,
        json!({"title": "عينة", "amount_minor": 1_001, "currency": "SAR", "stage_id": stage["id"]}),
    )
    .await;
    assert_eq!(d["stage_id"], stage["id"]);
    let r = app
        .send(
            "patch",
            &format!("/api/v1/pipeline/stages/{}", stage["id"].as_str().unwrap()),
            Some(&manager),
            Some(&json!({"probability": 35})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let summary = app.get_json("/api/v1/deals/summary", &manager).await;
    let row = summary["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["stage_id"] == stage["id"])
        .unwrap()
        .clone();
    // 1,001 × 35 = 35,035 → 350.35 → 350.
    assert_eq!(row["weighted_minor"], 350);
    for (body, status) in [
        (
            json!({"name": "qualification", "position": 11, "probability": 5}),
            409,
        ),
        (
            json!({"name": "جديدة", "position": 0, "probability": 5}),
            409,
        ),
        (
            json!({"name": "ربح آخر", "position": 12, "probability": 90, "kind": "won"}),
            422,
        ),
        (
            json!({"name": "x", "position": 13, "probability": 101}),
            422,
        ),
    ] {
        let r = app
            .send(
                "post",
                "/api/v1/pipeline/stages",
                Some(&manager),
                Some(&body),
            )
            .await;
        assert_eq!(r.status().as_u16(), status, "{body}");
    }
    let rep = app.token(tenant, Role::SalesRep);
    let r = app
        .send(
            "post",
            "/api/v1/pipeline/stages",
            Some(&rep),
            Some(&json!({"name": "y", "position": 14, "probability": 5})),
        )
        .await;
    assert_eq!(error_code(r, 403).await, "forbidden");
}
