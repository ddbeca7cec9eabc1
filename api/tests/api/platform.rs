//! The platform view: superadmins see every tenant's counts through `wasit_platform`, each call
//! audited; nobody else gets it, and the application role cannot become the platform role.

use api::auth::Role;
use serde_json::json;

use crate::helpers::{error_code, spawn_app};

#[tokio::test]
async fn superadmins_see_every_tenant_and_every_call_is_audited() {
    let app = spawn_app().await;
    let a = app.test_db.tenant("riyadh-gold").await;
    let b = app.test_db.tenant("jeddah-gold").await;
    let admin_b = app.user_token(b, Role::Admin).await;
    for body in [json!({"source": "web"}), json!({"source": "sms"})] {
        let r = app
            .send("post", "/api/v1/leads", Some(&admin_b), Some(&body))
            .await;
        assert_eq!(r.status(), 201);
    }
    let root = app.user_token(a, Role::Superadmin).await;
    let view = app.get_json("/api/v1/platform/tenants", &root).await;
    assert_eq!(view["tenants"], 2);
    let rows: Vec<(String, i64, i64)> = view["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["slug"].as_str().unwrap().to_owned(),
                t["users"].as_i64().unwrap(),
                t["leads"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("riyadh-gold".to_owned(), 1, 0),
            ("jeddah-gold".to_owned(), 1, 2)
        ]
    );

    let audited: Vec<(String, uuid::Uuid, String)> =
        sqlx::query_as("SELECT actor_subject, actor_tenant, action FROM platform_audit")
            .fetch_all(&app.test_db.db().admin)
            .await
            .unwrap();
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0].1, a.0);
    assert_eq!(audited[0].2, "list_tenants");
    let me = app.get_json("/api/v1/me", &root).await;
    assert_eq!(audited[0].0, me["user"]["id"].as_str().unwrap());

    let r = app.get("/api/v1/platform/tenants", Some(&admin_b)).await;
    assert_eq!(error_code(r, 403).await, "forbidden");

    // The application role can neither become the platform role nor read across tenants.
    // (The test server's app pool logs in as a superuser and SETs ROLE wasit_app, so membership
    // is checked in the catalog; a real wasit_app login, as the embedded cluster uses, has no
    // other role to become.)
    let (member, app_bypass, platform_bypass): (bool, bool, bool) = sqlx::query_as(
        "SELECT pg_has_role('wasit_app', 'wasit_platform', 'MEMBER'),
                (SELECT rolbypassrls FROM pg_roles WHERE rolname = 'wasit_app'),
                (SELECT rolbypassrls FROM pg_roles WHERE rolname = 'wasit_platform')",
    )
    .fetch_one(&app.test_db.db().admin)
    .await
    .unwrap();
    assert!(!member, "wasit_app is not a member of wasit_platform");
    assert!(!app_bypass && platform_bypass);
}
