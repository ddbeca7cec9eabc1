//! Security matrices generated from `api::openapi::CATALOG`, so a new route is covered the day it
//! is added: every route × every role; every route that takes an id against another tenant's
//! object; every list against another tenant's rows; every body field that names another record
//! filled with another tenant's id, and a `tenant_id` in every body.

use std::collections::HashMap;

use api::auth::Role;
use api::openapi::{CATALOG, Ids, RouteSpec};
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_code, spawn_app};

fn path_with(route: &RouteSpec, id: &str) -> String {
    format!("/api/v1{}", route.path.replace("{id}", id))
}

fn body_of(route: &RouteSpec, ids: &Ids) -> Option<Value> {
    route.request.map(|_| {
        route
            .example
            .map_or_else(|| json!({}), |example| example(ids))
    })
}

/// The catalog is what the router serves: every entry is routed (no 405, no "route not found"),
/// and /openapi.json documents exactly the catalog.
#[tokio::test]
async fn the_catalog_matches_the_router_and_the_document() {
    let app = spawn_app().await;
    let tenant = app.test_db.tenant("riyadh-gold").await;
    let token = app.token(tenant, Role::Superadmin);
    for route in CATALOG {
        let body = body_of(route, &Ids::new());
        let path = path_with(route, &uuid::Uuid::new_v4().to_string());
        let r = app
            .send(route.method, &path, Some(&token), body.as_ref())
            .await;
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_ne!(status, 405, "{} {path} is not routed", route.method);
        assert!(
            !text.contains("route not found"),
            "{} {path} is not routed: {text}",
            route.method
        );
    }
    let doc: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let documented: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|methods| methods.as_object().unwrap().len())
        .sum();
    assert_eq!(documented, CATALOG.len());
    for route in CATALOG {
        let op = &doc["paths"][format!("/api/v1{}", route.path)][route.method];
        assert!(
            op.is_object(),
            "{} {} is documented",
            route.method,
            route.path
        );
        if let Some(schema) = route.request {
            assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
        }
        assert!(
            doc["components"]["schemas"][route.response].is_object(),
            "{}",
            route.response
        );
    }
    let page = app.get("/docs", None).await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("/openapi.json"));
}

/// The routes `api::routes::api_v1` declares, as (method, path), read from its source.
fn declared_routes() -> Vec<(String, String)> {
    let source = include_str!("../../src/routes/mod.rs");
    let mut routes = Vec::new();
    for chunk in source.split(".route(").skip(1) {
        // The call's text: up to the parenthesis that closes `.route(`.
        let mut depth = 1;
        let end = chunk
            .char_indices()
            .find(|&(_, c)| {
                depth += match c {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                depth == 0
            })
            .map_or(chunk.len(), |(i, _)| i);
        let call = &chunk[..end];
        let path = call.split('"').nth(1).expect("a route path").to_owned();
        for method in ["get", "post", "put", "patch", "delete"] {
            let calls = call.matches(&format!("{method}(")).count();
            let dotted = call.matches(&format!(".{method}(")).count();
            let leading = call
                .trim_start_matches(|c: char| c != ',')
                .trim_start_matches([',', ' ', '\n']);
            if dotted > 0 || (calls > 0 && leading.starts_with(&format!("{method}("))) {
                routes.push((method.to_owned(), path.clone()));
            }
        }
    }
    routes
}

/// Every route the router declares is in the catalog, and the other way round.
#[test]
fn the_router_declares_exactly_the_catalog() {
    let mut declared = declared_routes();
    declared.sort();
    let mut catalog: Vec<(String, String)> = CATALOG
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    catalog.sort();
    assert_eq!(declared, catalog);
}

/// Every route × every role: a role the catalog allows is never refused (403), one it does not
/// allow always is, and without a token every protected route answers 401.
#[tokio::test]
async fn every_route_checks_roles() {
    let app = spawn_app().await;
    let tenant = app.test_db.tenant("riyadh-gold").await;
    for route in CATALOG {
        let Some(allowed) = route.roles else { continue };
        let path = path_with(route, &uuid::Uuid::new_v4().to_string());
        let body = body_of(route, &Ids::new());
        let r = app.send(route.method, &path, None, body.as_ref()).await;
        assert_eq!(r.status(), 401, "{} {path} without a token", route.method);
        for role in Role::ALL {
            let token = app.token(tenant, *role);
            let body = body_of(route, &Ids::new());
            let r = app
                .send(route.method, &path, Some(&token), body.as_ref())
                .await;
            let status = r.status().as_u16();
            if allowed.contains(role) {
                assert_ne!(status, 403, "{} {path} refused {role}", route.method);
                assert!(status < 500, "{} {path} as {role}: {status}", route.method);
            } else {
                assert_eq!(status, 403, "{} {path} let {role} through", route.method);
            }
        }
    }
}

/// Creates one object of each kind the catalog can create, in `tenant`; returns the ids by kind.
async fn objects_of(app: &TestApp, token: &str) -> Ids {
    let mut ids = Ids::new();
    // Kinds no route creates (conversations come from channels): made as a channel would.
    let me = app.get_json("/api/v1/me", token).await;
    let tenant: uuid::Uuid = me["tenant"]["id"].as_str().unwrap().parse().unwrap();
    let conversation: uuid::Uuid = sqlx::query_scalar(
        "WITH c AS (INSERT INTO contacts (tenant_id, display_name) VALUES ($1, 'عميل') RETURNING id),
              v AS (INSERT INTO conversations (tenant_id, contact_id, channel) SELECT $1, id, 'whatsapp' FROM c RETURNING id),
              m AS (INSERT INTO messages (tenant_id, conversation_id, direction, channel, kind, body)
                    SELECT $1, id, 'inbound', 'whatsapp', 'text', 'مرحبا' FROM v),
              a AS (INSERT INTO ai_conversations (tenant_id, conversation_id, turn_seq, agent, prompt_version, model)
                    SELECT $1, id, 1, 'sales', 'sha256:test', 'test-model' FROM v)
         SELECT id FROM v",
    )
    .bind(tenant)
    .fetch_one(&app.test_db.db().admin)
    .await
    .unwrap();
    ids.insert("conversation", conversation.to_string());
    if let Some(user) = me["user"]["id"].as_str() {
        let notification: uuid::Uuid = sqlx::query_scalar(
            "INSERT INTO notifications (tenant_id, user_id, kind, title) VALUES ($1, $2::uuid, 'test', 'تنبيه') RETURNING id",
        )
        .bind(tenant)
        .bind(user)
        .fetch_one(&app.test_db.db().admin)
        .await
        .unwrap();
        ids.insert("notification", notification.to_string());
    }
    for route in CATALOG
        .iter()
        .filter(|r| r.method == "post" && r.object.is_some() && !r.path.contains("{id}"))
    {
        let body = body_of(route, &ids);
        let r = app
            .send(
                route.method,
                &path_with(route, ""),
                Some(token),
                body.as_ref(),
            )
            .await;
        assert_eq!(
            r.status().as_u16(),
            route.status,
            "{} {}",
            route.method,
            route.path
        );
        let created: Value = r.json().await.unwrap();
        ids.insert(
            route.object.unwrap(),
            created["id"].as_str().unwrap().to_owned(),
        );
        if route.path == "/commission-rules" {
            // Commissions are computed, never posted: one for the deal and rule just made.
            let commission: uuid::Uuid = sqlx::query_scalar(
                "INSERT INTO commissions (tenant_id, deal_id, rule_id, affiliate_id, base_minor, amount_minor, currency, period)
                 VALUES ($1, $2::uuid, $3::uuid, $4::uuid, 1000, 50, 'SAR', date_trunc('month', now())::date) RETURNING id",
            )
            .bind(tenant)
            .bind(&ids["deal"])
            .bind(&ids["rule"])
            .bind(&ids["affiliate"])
            .fetch_one(&app.test_db.db().admin)
            .await
            .unwrap();
            ids.insert("commission", commission.to_string());
        }
        if route.path == "/guarantee-claims" {
            // Approvals are asked for by agents, never posted: one refund on the claim just made.
            let approval: uuid::Uuid = sqlx::query_scalar(
                "INSERT INTO approvals (tenant_id, kind, agent, tool, arguments, summary, subject_type, subject_id, amount_minor, currency)
                 VALUES ($1, 'refund', 'guarantee', 'request_refund', '{}', 'استرداد', 'guarantee_claim', $2::uuid, 100, 'SAR') RETURNING id",
            )
            .bind(tenant)
            .bind(&ids["claim"])
            .fetch_one(&app.test_db.db().admin)
            .await
            .unwrap();
            ids.insert("approval", approval.to_string());
        }
    }
    ids
}

/// Tenant A's token against tenant B's objects: every route that takes an id answers 404 (never
/// 403, never the object, never a change), and every list leaves B's rows out.
#[tokio::test]
async fn another_tenants_objects_are_not_found_and_never_listed() {
    let app = spawn_app().await;
    let a = app.test_db.tenant("riyadh-gold").await;
    let b = app.test_db.tenant("jeddah-gold").await;
    let token_a = app.user_token(a, Role::Superadmin).await;
    let token_b = app.user_token(b, Role::Superadmin).await;
    let objects_a = objects_of(&app, &token_a).await;
    let objects_b = objects_of(&app, &token_b).await;

    for route in CATALOG.iter().filter(|r| r.path.contains("{id}")) {
        let kind = route.object.expect("a route with an id names its kind");
        let id = objects_b
            .get(kind)
            .unwrap_or_else(|| panic!("no route creates a {kind}"));
        let body = body_of(route, &objects_a);
        let r = app
            .send(
                route.method,
                &path_with(route, id),
                Some(&token_a),
                body.as_ref(),
            )
            .await;
        let text = format!("{} {} against B's {kind}", route.method, route.path);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{text}: {body}");
        assert!(
            !body.to_string().contains(id.as_str()),
            "{text} leaked the id"
        );
        // And A's own object of that kind is found, so the 404 is about the tenant.
        let own = app
            .send(
                route.method,
                &path_with(route, &objects_a[kind]),
                Some(&token_a),
                body_of(route, &objects_a).as_ref(),
            )
            .await;
        // (Its success may depend on the object's state, like a refund of an approved claim.)
        let own_status = own.status().as_u16();
        assert!(
            own_status != 404 && own_status != 403 && own_status < 500,
            "{text}: A's own answered {own_status}"
        );
    }
    let b_changes: i64 = app
        .count(&format!(
            "SELECT count(*) FROM audit_log WHERE tenant_id = '{}' AND action <> 'create'",
            b.0
        ))
        .await;
    assert_eq!(b_changes, 0, "nothing of B's was changed");

    for route in CATALOG
        .iter()
        .filter(|r| r.method == "get" && r.response.ends_with("Page"))
    {
        let page: Value = app
            .get(&path_with(route, ""), Some(&token_a))
            .await
            .json()
            .await
            .unwrap();
        let listed = page["items"].to_string();
        for id in objects_b.values() {
            assert!(
                !listed.contains(id.as_str()),
                "{} lists B's {id}",
                route.path
            );
        }
    }
}

/// Every body field that names another record (`*_id`) set to another tenant's record is
/// rejected (422) and changes nothing; so is a `tenant_id` in any body.
#[tokio::test]
async fn bodies_naming_another_tenants_records_are_rejected() {
    let app = spawn_app().await;
    let a = app.test_db.tenant("riyadh-gold").await;
    let b = app.test_db.tenant("jeddah-gold").await;
    let token_a = app.user_token(a, Role::Superadmin).await;
    let objects_a = objects_of(&app, &token_a).await;
    // B's records of every kind a body can name.
    let b_user = app
        .test_db
        .user(
            b,
            "rep@jeddah.example",
            Role::SalesRep,
            "long enough password",
        )
        .await;
    let b_contact: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO contacts (tenant_id, display_name) VALUES ($1, 'عميل جدة') RETURNING id",
    )
    .bind(b.0)
    .fetch_one(&app.test_db.db().admin)
    .await
    .unwrap();
    let b_lead: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO leads (tenant_id, source) VALUES ($1, 'manual') RETURNING id",
    )
    .bind(b.0)
    .fetch_one(&app.test_db.db().admin)
    .await
    .unwrap();
    let b_stage: uuid::Uuid = sqlx::query_scalar(
        "SELECT id FROM pipeline_stages WHERE tenant_id = $1 AND kind = 'open' ORDER BY position LIMIT 1",
    )
    .bind(b.0)
    .fetch_one(&app.test_db.db().admin)
    .await
    .unwrap();
    let b_deal: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO deals (tenant_id, title, stage_id, amount_minor, currency)
         VALUES ($1, 'صفقة جدة', $2, 100, 'SAR') RETURNING id",
    )
    .bind(b.0)
    .bind(b_stage)
    .fetch_one(&app.test_db.db().admin)
    .await
    .unwrap();
    let b_affiliate: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO affiliates (tenant_id, display_name, referral_code) VALUES ($1, 'شريك جدة', 'JEDDAH01') RETURNING id",
    )
    .bind(b.0)
    .fetch_one(&app.test_db.db().admin)
    .await
    .unwrap();
    let b_claim: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO guarantee_claims (tenant_id, description, claimed_minor, currency) VALUES ($1, 'مطالبة', 100, 'SAR') RETURNING id",
    )
    .bind(b.0)
    .fetch_one(&app.test_db.db().admin)
    .await
    .unwrap();
    let foreign: HashMap<&str, uuid::Uuid> = HashMap::from([
        ("subject_id", b_claim),
        ("affiliate_id", b_affiliate),
        ("user_id", b_user.0),
        ("rep_user_id", b_user.0),
        ("deal_id", b_deal),
        ("owner_user_id", b_user.0),
        ("contact_id", b_contact),
        ("lead_id", b_lead),
        ("stage_id", b_stage),
    ]);
    let doc = api::openapi::document();

    for route in CATALOG
        .iter()
        .filter(|r| r.request.is_some() && r.roles.is_some())
    {
        let schema = &doc["components"]["schemas"][route.request.unwrap()];
        let path = match route.object {
            Some(kind) if route.path.contains("{id}") => path_with(route, &objects_a[kind]),
            _ => path_with(route, ""),
        };
        let mut fields: Vec<(String, Value)> = vec![("tenant_id".into(), json!(b.0))];
        for name in schema["properties"].as_object().unwrap().keys() {
            if name.ends_with("_id") {
                let id = foreign
                    .get(name.as_str())
                    .unwrap_or_else(|| panic!("no foreign record for {name}; add one here"));
                fields.push((name.clone(), json!(id)));
            }
        }
        for (name, value) in fields {
            let leads_before = app.count("SELECT count(*) FROM leads").await;
            let deals_before = app.count("SELECT count(*) FROM deals").await;
            let meetings_before = app.count("SELECT count(*) FROM meetings").await;
            let audit_before = app.count("SELECT count(*) FROM audit_log").await;
            let mut body = body_of(route, &objects_a).unwrap();
            body[&name] = value;
            let r = app
                .send(route.method, &path, Some(&token_a), Some(&body))
                .await;
            let what = format!("{} {} with B's {name}", route.method, route.path);
            assert_eq!(error_code(r, 422).await, "invalid", "{what}");
            assert_eq!(
                app.count("SELECT count(*) FROM leads").await,
                leads_before,
                "{what}"
            );
            assert_eq!(
                app.count("SELECT count(*) FROM deals").await,
                deals_before,
                "{what}"
            );
            assert_eq!(
                app.count("SELECT count(*) FROM meetings").await,
                meetings_before,
                "{what}"
            );
            assert_eq!(
                app.count("SELECT count(*) FROM audit_log").await,
                audit_before,
                "{what}"
            );
        }
    }
}
