//! Contacts through the REST API: identities normalised and unique, search, consent per channel.

use api::auth::Role;
use api::repo::contacts::{ConsentChannel, may_message_proactively};
use runtime::db::begin_tenant;
use serde_json::{Value, json};

use crate::helpers::{error_code, spawn_app};

/// Identities are stored normalised and found however they are typed; an identity another
/// contact has is a 409 that stores nothing; names are searched in Arabic.
#[tokio::test]
async fn identities_are_normalised_unique_and_searchable() {
    let app = spawn_app().await;
    let tenant = app.test_db.tenant("riyadh-gold").await;
    let token = app.token(tenant, Role::SalesRep);
    let r = app
        .send(
            "post",
            "/api/v1/contacts",
            Some(&token),
            Some(
                &json!({"display_name": "سارة القحطاني", "locale": "ar-SA", "identities": [
                {"kind": "phone", "value": "+966 50-123 4567"},
                {"kind": "email", "value": "Sara@Example.COM"}]}),
            ),
        )
        .await;
    assert_eq!(r.status(), 201);
    let contact: Value = r.json().await.unwrap();
    assert_eq!(contact["display_name"], "سارة القحطاني");
    assert_eq!(
        contact["identities"],
        json!([{"kind": "email", "value": "sara@example.com"}, {"kind": "phone", "value": "+966501234567"}])
    );
    assert_eq!(contact["consent"], json!({}));

    for query in [
        "identity=966501234567",
        "identity=%2B966%2050%20123%204567",
        "identity=SARA@example.com",
        "q=%D8%B3%D8%A7%D8%B1%D8%A9",
    ] {
        let page: Value = app
            .get(&format!("/api/v1/contacts?{query}"), Some(&token))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(page["items"].as_array().unwrap().len(), 1, "{query}");
        assert_eq!(page["items"][0]["id"], contact["id"], "{query}");
    }
    let none: Value = app
        .get("/api/v1/contacts?q=%25", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["items"], json!([]), "% matches itself, not everything");

    let before = app.count("SELECT count(*) FROM contacts").await;
    let r = app
        .send(
            "post",
            "/api/v1/contacts",
            Some(&token),
            Some(&json!({"display_name": "آخر", "identities": [{"kind": "phone", "value": "00966501234567"}]})),
        )
        .await;
    assert_eq!(error_code(r, 409).await, "conflict");
    assert_eq!(app.count("SELECT count(*) FROM contacts").await, before);
}

/// Consent is recorded per channel and read by whoever messages proactively.
#[tokio::test]
async fn consent_is_recorded_per_channel_and_opted_out_means_no_proactive_messages() {
    let app = spawn_app().await;
    let tenant = app.test_db.tenant("riyadh-gold").await;
    let token = app.token(tenant, Role::SalesManager);
    let contact: Value = app
        .send(
            "post",
            "/api/v1/contacts",
            Some(&token),
            Some(&json!({"display_name": "خالد"})),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = contact["id"].as_str().unwrap();
    let path = format!("/api/v1/contacts/{id}");
    let r = app
        .send(
            "patch",
            &path,
            Some(&token),
            Some(&json!({"consent": {"sms": "opted_out", "whatsapp": "granted"}})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["consent"]["sms"]["status"], "opted_out");
    assert_eq!(body["consent"]["sms"]["source"], "api");
    assert_eq!(body["consent"]["whatsapp"]["status"], "granted");
    assert!(body["consent"]["email"].is_null());

    let contact_id: runtime::ContactId = id.parse().unwrap();
    let may = |channel| {
        let app = &app;
        async move {
            let mut tx = begin_tenant(&app.test_db.db().app, tenant).await.unwrap();
            let may = may_message_proactively(&mut tx, contact_id, channel)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            may
        }
    };
    assert!(!may(ConsentChannel::Sms).await);
    assert!(may(ConsentChannel::Whatsapp).await);
    assert!(
        may(ConsentChannel::Email).await,
        "nothing recorded: the default applies"
    );

    let r = app
        .send(
            "patch",
            &path,
            Some(&token),
            Some(&json!({"consent": {"sms": "granted"}, "display_name": null})),
        )
        .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["consent"]["sms"]["status"], "granted");
    assert_eq!(body["display_name"], Value::Null);
    assert!(may(ConsentChannel::Sms).await);
    assert_eq!(
        app.count("SELECT count(*) FROM audit_log WHERE entity = 'contact'")
            .await,
        3
    );
}

/// Bad identities, unknown channels and statuses, and a tenant_id are rejected; nothing changes.
#[tokio::test]
async fn bad_contact_input_is_rejected_and_changes_nothing() {
    let app = spawn_app().await;
    let tenant = app.test_db.tenant("riyadh-gold").await;
    let token = app.token(tenant, Role::Admin);
    for body in [
        json!({"identities": [{"kind": "phone", "value": "call me"}]}),
        json!({"identities": [{"kind": "email", "value": "not-an-email"}]}),
        json!({"identities": [{"kind": "fax", "value": "123"}]}),
        json!({"display_name": ""}),
        json!({"tenant_id": uuid::Uuid::new_v4()}),
    ] {
        let r = app
            .send("post", "/api/v1/contacts", Some(&token), Some(&body))
            .await;
        assert_eq!(error_code(r, 422).await, "invalid", "{body}");
    }
    assert_eq!(app.count("SELECT count(*) FROM contacts").await, 0);
    let contact: Value = app
        .send("post", "/api/v1/contacts", Some(&token), Some(&json!({})))
        .await
        .json()
        .await
        .unwrap();
    let path = format!("/api/v1/contacts/{}", contact["id"].as_str().unwrap());
    for body in [
        json!({"consent": {"fax": "granted"}}),
        json!({"consent": {"sms": "maybe"}}),
        json!({"add_identities": [{"kind": "phone", "value": "12"}]}),
    ] {
        let r = app.send("patch", &path, Some(&token), Some(&body)).await;
        assert_eq!(error_code(r, 422).await, "invalid", "{body}");
    }
    assert_eq!(app.count("SELECT count(*) FROM contact_consents").await, 0);
    assert_eq!(
        app.count("SELECT count(*) FROM contact_identities").await,
        0
    );
}
