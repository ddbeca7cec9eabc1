//! JWT validation, roles, login, and bad input on `/api/v1`.

use api::auth::{AUDIENCE, ISSUER, Role};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::{JWT_SECRET, TestApp, error_code, spawn_app};

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn claims(tenant: runtime::TenantId) -> Value {
    json!({
        "sub": "cli:test", "tid": tenant, "role": "admin",
        "iss": ISSUER, "aud": AUDIENCE, "iat": now(), "exp": now() + 600,
    })
}

fn sign(claims: &Value, alg: Algorithm, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn me_status(app: &TestApp, token: &str) -> u16 {
    let res = app.get("/api/v1/me", Some(token)).await;
    let status = res.status().as_u16();
    if status == 401 {
        assert_eq!(error_code(res, 401).await, "unauthenticated");
    }
    status
}

/// A well-formed token is accepted; the control for every rejection below.
#[tokio::test]
async fn a_valid_token_reaches_the_tenant() {
    let app = spawn_app().await;
    let tenant = app.test_db.tenant("acme").await;
    let res = app
        .get(
            "/api/v1/me",
            Some(&sign(&claims(tenant), Algorithm::HS256, JWT_SECRET)),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["tenant"]["slug"], "acme");
    assert_eq!(body["role"], "admin");
}

/// Expired, wrong audience, wrong issuer, `alg: none`, bad signature, another algorithm, missing
/// tenant, unknown role, and malformed headers: all 401 with the JSON error body.
#[tokio::test]
async fn every_kind_of_bad_token_is_401() {
    let app = spawn_app().await;
    let tenant = app.test_db.tenant("acme").await;
    let good = claims(tenant);
    let with = |key: &str, value: Value| {
        let mut c = good.clone();
        c[key] = value;
        c
    };
    let without = |key: &str| {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove(key);
        c
    };
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(good.to_string())
    );
    let cases: Vec<(&str, String)> = vec![
        (
            "expired",
            sign(
                &with("exp", json!(now() - 3600)),
                Algorithm::HS256,
                JWT_SECRET,
            ),
        ),
        (
            "wrong audience",
            sign(
                &with("aud", json!("someone-else")),
                Algorithm::HS256,
                JWT_SECRET,
            ),
        ),
        (
            "wrong issuer",
            sign(&with("iss", json!("evil")), Algorithm::HS256, JWT_SECRET),
        ),
        ("alg none", alg_none),
        (
            "bad signature",
            sign(
                &good,
                Algorithm::HS256,
                "another-secret-entirely-32-bytes!!",
            ),
        ),
        (
            "HS512 with the right key",
            sign(&good, Algorithm::HS512, JWT_SECRET),
        ),
        (
            "missing tenant",
            sign(&without("tid"), Algorithm::HS256, JWT_SECRET),
        ),
        (
            "missing exp",
            sign(&without("exp"), Algorithm::HS256, JWT_SECRET),
        ),
        (
            "unknown role",
            sign(&with("role", json!("king")), Algorithm::HS256, JWT_SECRET),
        ),
        ("not a token", "abc.def".to_owned()),
    ];
    for (what, token) in cases {
        assert_eq!(
            me_status(&app, &token).await,
            401,
            "{what} must be rejected"
        );
    }

    let no_header = app.get("/api/v1/me", None).await;
    assert_eq!(no_header.headers()["www-authenticate"], "Bearer");
    assert_eq!(error_code(no_header, 401).await, "unauthenticated");
    let basic = app
        .client
        .get(app.url("/api/v1/me"))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(basic, 401).await, "unauthenticated");
}

/// A token for a tenant that does not exist grants nothing, on any route: 401, not an empty list
/// or a 500.
#[tokio::test]
async fn a_token_for_a_missing_tenant_is_401_everywhere() {
    let app = spawn_app().await;
    let token = app.token(runtime::TenantId::new(), Role::Admin);
    assert_eq!(me_status(&app, &token).await, 401);
    let list = app.get("/api/v1/users", Some(&token)).await;
    assert_eq!(error_code(list, 401).await, "unauthenticated");
    let create = app
        .client
        .post(app.url("/api/v1/users"))
        .bearer_auth(&token)
        .json(&json!({"email": "x@nowhere.io", "role": "sales_rep"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(create, 401).await, "unauthenticated");
}

/// A user's token stops working as soon as the user is disabled or given another role.
#[tokio::test]
async fn tokens_of_disabled_or_demoted_users_are_401() {
    let app = spawn_app().await;
    let tenant = app.test_db.tenant("acme").await;
    let user = app
        .test_db
        .user(tenant, "boss@acme.io", Role::Admin, "password-1")
        .await;
    let token = app.keys.issue(
        tenant,
        Role::Admin,
        &user.to_string(),
        time::Duration::minutes(5),
    );
    assert_eq!(app.get("/api/v1/users", Some(&token)).await.status(), 200);

    let admin = &app.test_db.db().admin;
    let mut tx = runtime::db::begin_tenant(admin, tenant).await.unwrap();
    sqlx::query("UPDATE users SET role = 'sales_rep' WHERE id = $1")
        .bind(user)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let demoted = app.get("/api/v1/users", Some(&token)).await;
    assert_eq!(error_code(demoted, 401).await, "unauthenticated");

    let mut tx = runtime::db::begin_tenant(admin, tenant).await.unwrap();
    sqlx::query("UPDATE users SET role = 'admin', disabled_at = now() WHERE id = $1")
        .bind(user)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let disabled = app.get("/api/v1/users", Some(&token)).await;
    assert_eq!(error_code(disabled, 401).await, "unauthenticated");
}

/// A wrong method is a JSON 405.
#[tokio::test]
async fn wrong_method_is_a_json_405() {
    let app = spawn_app().await;
    let res = app
        .client
        .delete(app.url("/api/v1/auth/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res, 405).await, "method_not_allowed");
}

/// A sales rep may not call an admin-only route; an admin may.
#[tokio::test]
async fn roles_are_enforced() {
    let app = spawn_app().await;
    let tenant = app.test_db.tenant("acme").await;
    let rep = app
        .get("/api/v1/users", Some(&app.token(tenant, Role::SalesRep)))
        .await;
    assert_eq!(error_code(rep, 403).await, "forbidden");
    let post = app
        .client
        .post(app.url("/api/v1/users"))
        .bearer_auth(app.token(tenant, Role::PromptEngineer))
        .json(&json!({"email": "x@acme.io", "role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(post, 403).await, "forbidden");
    let admin = app
        .get("/api/v1/users", Some(&app.token(tenant, Role::Admin)))
        .await;
    assert_eq!(admin.status(), 200);
    // An admin may not mint a superadmin.
    let escalate = app
        .client
        .post(app.url("/api/v1/users"))
        .bearer_auth(app.token(tenant, Role::Admin))
        .json(&json!({"email": "root@acme.io", "role": "superadmin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(escalate, 403).await, "forbidden");
}

/// Login with the right password returns a token that works; every wrong combination is the same 401.
#[tokio::test]
async fn login_issues_a_working_token_and_refuses_the_rest() {
    let app = spawn_app().await;
    let tenant = app.test_db.tenant("acme").await;
    let other = app.test_db.tenant("other").await;
    app.test_db
        .user(tenant, "rep@acme.io", Role::SalesRep, "كلمة-سر-1234")
        .await;
    app.test_db
        .user(other, "boss@other.io", Role::Admin, "other-password")
        .await;

    let login = |body: Value| {
        app.client
            .post(app.url("/api/v1/auth/login"))
            .json(&body)
            .send()
    };
    let res = login(json!({"tenant": "acme", "email": "REP@acme.io", "password": "كلمة-سر-1234"}))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["role"], "sales_rep");
    let token = body["token"].as_str().unwrap();
    let me: Value = app
        .get("/api/v1/me", Some(token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"]["email"], "rep@acme.io");
    assert_eq!(me["tenant"]["slug"], "acme");

    for wrong in [
        json!({"tenant": "acme", "email": "rep@acme.io", "password": "wrong-password"}),
        json!({"tenant": "acme", "email": "nobody@acme.io", "password": "كلمة-سر-1234"}),
        json!({"tenant": "nope", "email": "rep@acme.io", "password": "كلمة-سر-1234"}),
        // The right user and password, but in another tenant.
        json!({"tenant": "acme", "email": "boss@other.io", "password": "other-password"}),
    ] {
        let res = login(wrong.clone()).await.unwrap();
        assert_eq!(error_code(res, 401).await, "unauthenticated", "{wrong}");
    }
}

/// Malformed JSON, invalid UTF-8, a missing field, an unknown enum value, a body over the limit,
/// and a missing content type are each rejected with their status, and nothing is created.
#[tokio::test]
async fn bad_bodies_get_clear_errors_and_change_nothing() {
    let app = spawn_app().await;
    let tenant = app.test_db.tenant("acme").await;
    let admin = app.token(tenant, Role::Admin);
    let post = |body: Vec<u8>, content_type: Option<&str>| {
        let mut req = app
            .client
            .post(app.url("/api/v1/users"))
            .bearer_auth(&admin)
            .body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        req.send()
    };
    let json_ct = Some("application/json");
    // (what, body, content type, expected status, expected error code)
    type Case<'a> = (&'a str, Vec<u8>, Option<&'a str>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "malformed",
            b"{\"email\": ".to_vec(),
            json_ct,
            400,
            "malformed",
        ),
        (
            "invalid utf-8",
            b"{\"email\": \"\xff\xfe@x.io\", \"role\": \"admin\"}".to_vec(),
            json_ct,
            400,
            "malformed",
        ),
        (
            "missing role",
            br#"{"email": "a@acme.io"}"#.to_vec(),
            json_ct,
            422,
            "invalid",
        ),
        (
            "unknown role",
            br#"{"email": "a@acme.io", "role": "king"}"#.to_vec(),
            json_ct,
            422,
            "invalid",
        ),
        (
            "bad email",
            br#"{"email": "nope", "role": "admin"}"#.to_vec(),
            json_ct,
            422,
            "invalid",
        ),
        (
            "unknown field",
            br#"{"email": "a@acme.io", "role": "admin", "tenant_id": "x"}"#.to_vec(),
            json_ct,
            422,
            "invalid",
        ),
        (
            "oversize",
            vec![b' '; 2 * 1024 * 1024],
            json_ct,
            413,
            "payload_too_large",
        ),
        (
            "no content type",
            br#"{"email": "a@acme.io", "role": "admin"}"#.to_vec(),
            None,
            415,
            "unsupported_media_type",
        ),
    ];
    for (what, body, ct, status, code) in cases {
        let res = post(body, ct).await.unwrap();
        assert_eq!(res.status().as_u16(), status, "{what}");
        assert_eq!(error_code(res, status).await, code, "{what}");
    }
    let list: Value = app
        .get("/api/v1/users", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        0,
        "nothing was created"
    );

    // A valid body works, and the same email again is a conflict.
    let ok = post(
        br#"{"email": "a@acme.io", "role": "sales_rep"}"#.to_vec(),
        json_ct,
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), 201);
    let again = post(
        br#"{"email": "A@acme.io", "role": "admin"}"#.to_vec(),
        json_ct,
    )
    .await
    .unwrap();
    assert_eq!(error_code(again, 409).await, "conflict");
}

/// Another tenant's user id answers 404, exactly like an id that does not exist.
#[tokio::test]
async fn foreign_ids_are_404() {
    let app = spawn_app().await;
    let acme = app.test_db.tenant("acme").await;
    let other = app.test_db.tenant("other").await;
    let theirs = app
        .test_db
        .user(other, "boss@other.io", Role::Admin, "password-1")
        .await;
    let admin = app.token(acme, Role::Admin);
    let foreign = app
        .get(&format!("/api/v1/users/{theirs}"), Some(&admin))
        .await;
    assert_eq!(error_code(foreign, 404).await, "not_found");
    let missing = app
        .get(
            &format!("/api/v1/users/{}", uuid::Uuid::new_v4()),
            Some(&admin),
        )
        .await;
    assert_eq!(error_code(missing, 404).await, "not_found");
    let own = app
        .get(
            &format!("/api/v1/users/{theirs}"),
            Some(&app.token(other, Role::Admin)),
        )
        .await;
    assert_eq!(own.status(), 200);
}

/// Lists are paginated with `limit` and `cursor`, and a bad limit is 422.
#[tokio::test]
async fn user_list_paginates() {
    let app = spawn_app().await;
    let tenant = app.test_db.tenant("acme").await;
    for i in 0..5 {
        app.test_db
            .user(
                tenant,
                &format!("u{i}@acme.io"),
                Role::SalesRep,
                "password-1",
            )
            .await;
    }
    let admin = app.token(tenant, Role::Admin);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/users?limit=2&cursor={c}"),
            None => "/api/v1/users?limit=2".to_owned(),
        };
        let page: Value = app.get(&path, Some(&admin)).await.json().await.unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .map(|u| u["email"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "u0@acme.io",
            "u1@acme.io",
            "u2@acme.io",
            "u3@acme.io",
            "u4@acme.io"
        ]
    );
    let bad = app.get("/api/v1/users?limit=0", Some(&admin)).await;
    assert_eq!(error_code(bad, 422).await, "invalid");
}
