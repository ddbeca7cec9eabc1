//! Proposals: a draft is edited, then sent, then accepted or declined; what was sent stays as sent.

use api::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{error_code, spawn_app};

#[tokio::test]
async fn a_proposal_moves_draft_sent_decided_and_sent_content_is_frozen() {
    let app = spawn_app().await;
    let tenant = app.test_db.tenant("riyadh-gold").await;
    let token = app.token(tenant, Role::SalesRep);
    let deal: Value = app
        .send(
            "post",
            "/api/v1/deals",
            Some(&token),
            Some(&json!({"title": "سبيكة", "amount_minor": 500_000, "currency": "SAR"})),
        )
        .await
        .json()
        .await
        .unwrap();
    let content = "## العرض\nسبيكة ١ كغ عيار ٢٤، مع **الضمان الذهبي**.";
    let r = app
        .send(
            "post",
            "/api/v1/proposals",
            Some(&token),
            Some(&json!({"deal_id": deal["id"], "title": "عرض", "content": content, "amount_minor": 500_000, "currency": "SAR"})),
        )
        .await;
    assert_eq!(r.status(), 201);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["status"], "draft");
    assert_eq!(p["content"], content, "Markdown and Arabic round-trip");
    let path = format!("/api/v1/proposals/{}", p["id"].as_str().unwrap());

    let r = app
        .send(
            "patch",
            &path,
            Some(&token),
            Some(&json!({"status": "accepted"})),
        )
        .await;
    assert_eq!(
        error_code(r, 409).await,
        "conflict",
        "a draft is sent first"
    );
    let r = app
        .send(
            "patch",
            &path,
            Some(&token),
            Some(&json!({"title": "عرض نهائي"})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = app
        .send(
            "patch",
            &path,
            Some(&token),
            Some(&json!({"status": "sent"})),
        )
        .await;
    let sent: Value = r.json().await.unwrap();
    assert!(sent["sent_at"].is_string());
    let r = app
        .send(
            "patch",
            &path,
            Some(&token),
            Some(&json!({"content": "تغيير"})),
        )
        .await;
    assert_eq!(
        error_code(r, 409).await,
        "conflict",
        "sent content is frozen"
    );
    let r = app
        .send(
            "patch",
            &path,
            Some(&token),
            Some(&json!({"status": "accepted"})),
        )
        .await;
    let accepted: Value = r.json().await.unwrap();
    assert_eq!(accepted["status"], "accepted");
    assert!(accepted["decided_at"].is_string());
    assert_eq!(accepted["title"], "عرض نهائي");
    let r = app
        .send(
            "patch",
            &path,
            Some(&token),
            Some(&json!({"status": "declined"})),
        )
        .await;
    assert_eq!(error_code(r, 409).await, "conflict", "a decision is final");

    for body in [
        json!({"deal_id": deal["id"], "title": "x", "content": "y", "amount_minor": 10}),
        json!({"deal_id": deal["id"], "title": "x", "content": "y", "currency": "SAR"}),
        json!({"deal_id": deal["id"], "title": "", "content": "y"}),
        json!({"deal_id": uuid::Uuid::new_v4(), "title": "x", "content": "y"}),
    ] {
        let r = app
            .send("post", "/api/v1/proposals", Some(&token), Some(&body))
            .await;
        assert_eq!(error_code(r, 422).await, "invalid", "{body}");
    }
    let listed: Value = app
        .get_json(
            &format!(
                "/api/v1/proposals?deal_id={}&status=accepted",
                deal["id"].as_str().unwrap()
            ),
            &token,
        )
        .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
}
