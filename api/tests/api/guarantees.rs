//! The gold guarantee: a claim with evidence, reviewed, approved by a named user, refunded once
//! and never beyond what was approved.

use api::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{error_code, spawn_app};

#[tokio::test]
async fn a_claim_is_refunded_once_within_its_recorded_approval() {
    let app = spawn_app().await;
    let tenant = app.test_db.tenant("riyadh-gold").await;
    let rep = app.user_token(tenant, Role::SalesRep).await;
    let manager = app.user_token(tenant, Role::SalesManager).await;
    let r = app
        .send(
            "post",
            "/api/v1/guarantee-claims",
            Some(&rep),
            Some(&json!({"description": "السبيكة وصلت بوزن أقل", "claimed_minor": 250_000, "currency": "SAR"})),
        )
        .await;
    assert_eq!(r.status(), 201);
    let claim: Value = r.json().await.unwrap();
    let path = format!("/api/v1/guarantee-claims/{}", claim["id"].as_str().unwrap());
    let sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let r = app
        .send("post", &format!("{path}/evidence"), Some(&rep),
              Some(&json!({"file_name": "صورة الميزان.jpg", "content_type": "image/jpeg", "size_bytes": 120_000, "sha256": sha})))
        .await;
    assert_eq!(r.status(), 201);
    let with_evidence: Value = r.json().await.unwrap();
    assert_eq!(
        with_evidence["evidence"][0]["file_name"],
        "صورة الميزان.jpg"
    );

    let refund = |amount: i64| json!({"amount_minor": amount});
    let r = app
        .send(
            "post",
            &format!("{path}/refund"),
            Some(&manager),
            Some(&refund(1)),
        )
        .await;
    assert_eq!(error_code(r, 409).await, "conflict", "not approved yet");
    let r = app
        .send(
            "patch",
            &path,
            Some(&rep),
            Some(&json!({"status": "under_review"})),
        )
        .await;
    assert_eq!(error_code(r, 403).await, "forbidden", "reps do not review");
    let r = app
        .send(
            "patch",
            &path,
            Some(&manager),
            Some(&json!({"status": "approved", "approved_minor": 1})),
        )
        .await;
    assert_eq!(error_code(r, 409).await, "conflict", "review comes first");
    assert_eq!(
        app.send(
            "patch",
            &path,
            Some(&manager),
            Some(&json!({"status": "under_review"}))
        )
        .await
        .status(),
        200
    );
    for body in [
        json!({"status": "approved"}),
        json!({"status": "approved", "approved_minor": 250_001}),
        json!({"status": "rejected", "approved_minor": 5}),
    ] {
        let r = app.send("patch", &path, Some(&manager), Some(&body)).await;
        assert_eq!(error_code(r, 422).await, "invalid", "{body}");
    }
    let operator = app.token(tenant, Role::SalesManager);
    let r = app
        .send(
            "patch",
            &path,
            Some(&operator),
            Some(&json!({"status": "approved", "approved_minor": 200_000})),
        )
        .await;
    assert_eq!(
        error_code(r, 422).await,
        "invalid",
        "an approval names a user"
    );
    let r = app
        .send("patch", &path, Some(&manager), Some(&json!({"status": "approved", "approved_minor": 200_000, "decision_note": "نقص مثبت بالصور"})))
        .await;
    let approved: Value = r.json().await.unwrap();
    assert_eq!(approved["status"], "approved");
    let approver = approved["approved_by_user_id"].as_str().unwrap().to_owned();
    let me = app.get_json("/api/v1/me", &manager).await;
    assert_eq!(me["user"]["id"], approver.as_str());

    let r = app.send("post", &format!("{path}/evidence"), Some(&rep),
                     Some(&json!({"file_name": "x.jpg", "content_type": "image/jpeg", "size_bytes": 1, "sha256": sha}))).await;
    assert_eq!(
        error_code(r, 409).await,
        "conflict",
        "no evidence after the decision"
    );
    let r = app
        .send(
            "post",
            &format!("{path}/refund"),
            Some(&manager),
            Some(&refund(200_001)),
        )
        .await;
    assert_eq!(
        error_code(r, 422).await,
        "invalid",
        "never beyond the approval"
    );
    let r = app
        .send(
            "post",
            &format!("{path}/refund"),
            Some(&rep),
            Some(&refund(200_000)),
        )
        .await;
    assert_eq!(error_code(r, 403).await, "forbidden");
    let r = app
        .send(
            "post",
            &format!("{path}/refund"),
            Some(&manager),
            Some(&refund(200_000)),
        )
        .await;
    assert_eq!(r.status(), 201);
    let done: Value = r.json().await.unwrap();
    assert_eq!(done["amount_minor"], 200_000);
    assert_eq!(done["approved_by_user_id"], approver.as_str());
    let r = app
        .send(
            "post",
            &format!("{path}/refund"),
            Some(&manager),
            Some(&refund(1)),
        )
        .await;
    assert_eq!(error_code(r, 409).await, "conflict", "refunded once");
    let claim = app.get_json(&path, &rep).await;
    assert_eq!(claim["status"], "refunded");
    assert_eq!(app.count("SELECT count(*) FROM guarantee_refunds").await, 1);

    // The database holds the rule too: no claim is marked refunded without a recorded approval.
    let other: Value = app
        .send(
            "post",
            "/api/v1/guarantee-claims",
            Some(&rep),
            Some(&json!({"description": "خدش", "claimed_minor": 100, "currency": "SAR"})),
        )
        .await
        .json()
        .await
        .unwrap();
    let mut tx = runtime::db::begin_tenant(&app.test_db.db().app, tenant)
        .await
        .unwrap();
    let bypass = sqlx::query("UPDATE guarantee_claims SET status = 'refunded' WHERE id = $1::uuid")
        .bind(other["id"].as_str().unwrap())
        .execute(&mut *tx)
        .await;
    assert!(
        bypass.is_err(),
        "a CHECK refuses a refund without an approval"
    );
}

/// A dispute over a claim: raised (by an affiliate too), reviewed, resolved with a resolution and
/// who resolved it; every step in the audit log.
#[tokio::test]
async fn a_dispute_is_reviewed_and_resolved_with_a_trail() {
    let app = spawn_app().await;
    let tenant = app.test_db.tenant("riyadh-gold").await;
    let manager = app.user_token(tenant, Role::SalesManager).await;
    let affiliate = app.user_token(tenant, Role::Affiliate).await;
    let claim: Value = app
        .send("post", "/api/v1/guarantee-claims", Some(&manager),
              Some(&json!({"description": "خدش في السبيكة", "claimed_minor": 5_000, "currency": "SAR"})))
        .await
        .json()
        .await
        .unwrap();
    let r = app
        .send("post", "/api/v1/disputes", Some(&affiliate),
              Some(&json!({"subject_kind": "guarantee_claim", "subject_id": claim["id"], "reason": "لم يُنظر في الصور"})))
        .await;
    assert_eq!(r.status(), 201);
    let d: Value = r.json().await.unwrap();
    assert_eq!(d["raised_by_role"], "affiliate");
    let path = format!("/api/v1/disputes/{}", d["id"].as_str().unwrap());
    let r = app.get(&path, Some(&affiliate)).await;
    assert_eq!(
        error_code(r, 403).await,
        "forbidden",
        "affiliates raise, managers resolve"
    );
    let r = app
        .send(
            "patch",
            &path,
            Some(&manager),
            Some(&json!({"status": "resolved", "resolution": "x"})),
        )
        .await;
    assert_eq!(error_code(r, 409).await, "conflict", "reviewed first");
    assert_eq!(
        app.send(
            "patch",
            &path,
            Some(&manager),
            Some(&json!({"status": "under_review"}))
        )
        .await
        .status(),
        200
    );
    let r = app
        .send(
            "patch",
            &path,
            Some(&manager),
            Some(&json!({"status": "resolved"})),
        )
        .await;
    assert_eq!(
        error_code(r, 422).await,
        "invalid",
        "a resolution is required"
    );
    let r = app
        .send(
            "patch",
            &path,
            Some(&manager),
            Some(&json!({"status": "resolved", "resolution": "أعيد النظر وقُبلت الصور"})),
        )
        .await;
    let resolved: Value = r.json().await.unwrap();
    assert_eq!(resolved["status"], "resolved");
    assert!(resolved["resolved_by_user_id"].is_string());
    let trail = app
        .get_json(
            &format!(
                "/api/v1/audit-log?entity=dispute&entity_id={}",
                d["id"].as_str().unwrap()
            ),
            &manager,
        )
        .await;
    assert_eq!(trail["items"].as_array().unwrap().len(), 3);
    let r = app
        .send(
            "post",
            "/api/v1/disputes",
            Some(&manager),
            Some(&json!({"subject_kind": "commission", "subject_id": claim["id"], "reason": "x"})),
        )
        .await;
    assert_eq!(
        error_code(r, 422).await,
        "invalid",
        "the subject must be a commission of this tenant"
    );
}

/// Claims, like every list, come in pages joined by cursors, newest first.
#[tokio::test]
async fn claims_come_in_pages() {
    let app = spawn_app().await;
    let tenant = app.test_db.tenant("riyadh-gold").await;
    let rep = app.user_token(tenant, Role::SalesRep).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let body = json!({"description": format!("مطالبة {i}"), "claimed_minor": 100 * i, "currency": "SAR"});
        let claim: Value = app
            .send("post", "/api/v1/guarantee-claims", Some(&rep), Some(&body))
            .await
            .json()
            .await
            .unwrap();
        ids.push(claim["id"].as_str().unwrap().to_owned());
    }
    let (mut seen, mut path) = (Vec::new(), "/api/v1/guarantee-claims?limit=2".to_owned());
    loop {
        let page = app.get_json(&path, &rep).await;
        for c in page["items"].as_array().unwrap() {
            seen.push(c["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/guarantee-claims?limit=2&cursor={c}"),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids);
}
