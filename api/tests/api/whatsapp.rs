//! The WhatsApp webhook: handshake, signatures over raw bytes, durable and deduplicated storage,
//! tenant routing by phone_number_id, contact identity and merge, forward-only statuses.

use runtime::TenantId;
use runtime::db::begin_tenant;
use serde_json::{Value, json};

use crate::helpers::{TestApp, WHATSAPP_VERIFY_TOKEN, error_code, spawn_app};

const PNID: &str = "106540352242922";

/// Escapes every non-ASCII character as `\uXXXX` (UTF-16), as Meta does: the signature covers
/// these exact bytes, not a re-serialisation.
fn meta_bytes(v: &Value) -> Vec<u8> {
    let mut out = String::new();
    for c in v.to_string().chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out.into_bytes()
}

fn text_message(id: &str, from: &str, body: &str) -> Value {
    json!({"from": from, "id": id, "timestamp": "1749416383", "type": "text", "text": {"body": body}})
}

fn notification(pnid: &str, contacts: Value, messages: Value) -> Value {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{"field": "messages",
        "value": {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550783881", "phone_number_id": pnid},
                  "contacts": contacts, "messages": messages}}]}]})
}

async fn tenant_with_number(app: &TestApp, slug: &str, pnid: &str) -> TenantId {
    let tenant = app.test_db.tenant(slug).await;
    let mut tx = begin_tenant(&app.test_db.db().app, tenant).await.unwrap();
    api::repo::channels::add(
        &mut tx,
        "whatsapp",
        pnid,
        None,
        &json!({"access_token": "t"}),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    tenant
}

/// The handshake echoes the challenge exactly for the right token, and is 403 otherwise.
#[tokio::test]
async fn handshake_echoes_the_challenge_only_for_the_right_token() {
    let app = spawn_app().await;
    let url = |token: &str| {
        app.url(&format!("/webhooks/whatsapp?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token={token}"))
    };
    let ok = app
        .client
        .get(url(WHATSAPP_VERIFY_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    let wrong = app.client.get(url("nope")).send().await.unwrap();
    assert_eq!(wrong.status(), 403);
}

/// A signed Arabic text message is stored once, byte-exact, under the tenant that owns the
/// number, with its contact (both identities) and conversation.
#[tokio::test]
async fn a_signed_arabic_message_is_stored_byte_exact() {
    let app = spawn_app().await;
    let tenant = tenant_with_number(&app, "riyadh-gold", PNID).await;
    let arabic = "السلام عليكم، كم سعر سبيكة الذهب ١٠ جرام؟ 🌟";
    let body = meta_bytes(&notification(
        PNID,
        json!([{"profile": {"name": "سارة"}, "wa_id": "966500000001", "user_id": "SA.111"}]),
        json!([{"from": "966500000001", "from_user_id": "SA.111", "id": "wamid.A1", "timestamp": "1749416383",
                "type": "text", "text": {"body": arabic}}]),
    ));
    assert!(body.is_ascii(), "sent as Meta sends it");
    let res = app.post_whatsapp(&body).await;
    assert_eq!(res.status(), 200);

    let (stored_tenant, stored_body, kind, processed): (TenantId, String, String, bool) = sqlx::query_as(
        "SELECT tenant_id, body, kind, processed_at IS NOT NULL FROM messages WHERE provider_message_id = 'wamid.A1'",
    )
    .fetch_one(&app.test_db.db().admin)
    .await
    .unwrap();
    assert_eq!(stored_tenant, tenant);
    assert_eq!(stored_body.as_bytes(), arabic.as_bytes());
    assert_eq!(kind, "text");
    assert!(!processed, "waits for its turn");
    let identities: Vec<(String, String)> =
        sqlx::query_as("SELECT kind, value FROM contact_identities ORDER BY kind")
            .fetch_all(&app.test_db.db().admin)
            .await
            .unwrap();
    assert_eq!(
        identities,
        [
            ("phone".to_owned(), "+966500000001".to_owned()),
            ("whatsapp_bsuid".to_owned(), "SA.111".to_owned())
        ]
    );
    assert_eq!(
        app.count("SELECT count(*) FROM contacts WHERE display_name = 'سارة'")
            .await,
        1
    );
    assert_eq!(app.count("SELECT count(*) FROM conversations").await, 1);
}

/// 20 concurrent deliveries of the same notification store one message (and one contact).
#[tokio::test]
async fn concurrent_duplicate_deliveries_store_one_message() {
    let app = spawn_app().await;
    tenant_with_number(&app, "riyadh-gold", PNID).await;
    let body = meta_bytes(&notification(
        PNID,
        json!([]),
        json!([text_message("wamid.DUP", "966500000002", "مرحبا")]),
    ));
    let signature = channels::whatsapp::sign(crate::helpers::WHATSAPP_APP_SECRET.as_bytes(), &body);
    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let request = app
            .client
            .post(app.url("/webhooks/whatsapp"))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", signature.clone())
            .body(body.clone());
        sends.spawn(async move { request.send().await.unwrap().status() });
    }
    while let Some(status) = sends.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    assert_eq!(app.count("SELECT count(*) FROM messages").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM contacts").await, 1);
    assert_eq!(
        app.count("SELECT count(*) FROM contact_identities").await,
        1
    );
}

/// Two entries with two messages each, from four contacts, to two tenants' numbers: four messages,
/// each under the tenant owning its number.
#[tokio::test]
async fn every_entry_and_message_is_stored_under_its_tenant() {
    let app = spawn_app().await;
    let a = tenant_with_number(&app, "tenant-a", "111").await;
    let b = tenant_with_number(&app, "tenant-b", "222").await;
    let value =
        |pnid: &str, msgs: Value| json!({"metadata": {"phone_number_id": pnid}, "messages": msgs});
    let body = json!({"object": "whatsapp_business_account", "entry": [
        {"id": "1", "changes": [{"field": "messages", "value": value("111", json!([text_message("m1", "9661", "أ"), text_message("m2", "9662", "ب")]))}]},
        {"id": "2", "changes": [{"field": "messages", "value": value("222", json!([text_message("m3", "9663", "ت"), text_message("m4", "9664", "ث")]))}]}
    ]});
    assert_eq!(app.post_whatsapp(&meta_bytes(&body)).await.status(), 200);
    let rows: Vec<(String, TenantId)> =
        sqlx::query_as("SELECT provider_message_id, tenant_id FROM messages ORDER BY 1")
            .fetch_all(&app.test_db.db().admin)
            .await
            .unwrap();
    assert_eq!(
        rows,
        [
            ("m1".into(), a),
            ("m2".into(), a),
            ("m3".into(), b),
            ("m4".into(), b)
        ]
    );
    assert_eq!(app.count("SELECT count(*) FROM contacts").await, 4);
    assert_eq!(app.count("SELECT count(*) FROM conversations").await, 4);
}

/// Bad signature, missing signature, malformed JSON and an oversize body are rejected and store
/// nothing.
#[tokio::test]
async fn bad_requests_are_rejected_and_store_nothing() {
    let app = spawn_app().await;
    tenant_with_number(&app, "riyadh-gold", PNID).await;
    let body = meta_bytes(&notification(
        PNID,
        json!([]),
        json!([text_message("wamid.X", "9665", "hi")]),
    ));
    let post = |sig: Option<String>, body: Vec<u8>| {
        let mut req = app
            .client
            .post(app.url("/webhooks/whatsapp"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(sig) = sig {
            req = req.header("x-hub-signature-256", sig);
        }
        req.send()
    };
    let wrong = channels::whatsapp::sign(b"not-the-secret", &body);
    assert_eq!(
        error_code(post(Some(wrong), body.clone()).await.unwrap(), 401).await,
        "unauthenticated"
    );
    assert_eq!(
        error_code(post(None, body.clone()).await.unwrap(), 401).await,
        "unauthenticated"
    );
    // Signed correctly, but not JSON.
    let garbage = b"{\"object\": \"whatsapp_business_account\", \"entry\": [".to_vec();
    let res = app.post_whatsapp(&garbage).await;
    assert_eq!(error_code(res, 400).await, "malformed");
    // Over the limit.
    let mut huge = body.clone();
    huge.extend(std::iter::repeat_n(b' ', 2 * 1024 * 1024));
    let res = app.post_whatsapp(&huge).await;
    assert_eq!(res.status(), 413);
    assert_eq!(app.count("SELECT count(*) FROM messages").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM unroutable_events").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM contacts").await, 0);
}

/// A number no tenant owns is answered 200 and kept as an unroutable event.
#[tokio::test]
async fn an_unknown_number_is_kept_as_unroutable() {
    let app = spawn_app().await;
    tenant_with_number(&app, "riyadh-gold", PNID).await;
    let body = meta_bytes(&notification(
        "999999",
        json!([]),
        json!([text_message("wamid.U", "9665", "hi")]),
    ));
    assert_eq!(app.post_whatsapp(&body).await.status(), 200);
    assert_eq!(app.count("SELECT count(*) FROM messages").await, 0);
    assert_eq!(
        app.count("SELECT count(*) FROM unroutable_events WHERE address = '999999'")
            .await,
        1
    );
}

/// A contact first known by phone and another by BSUID are merged into one when a payload shows
/// both, with their messages in one conversation.
#[tokio::test]
async fn phone_and_bsuid_contacts_merge_when_a_payload_carries_both() {
    let app = spawn_app().await;
    tenant_with_number(&app, "riyadh-gold", PNID).await;
    let by_phone = notification(
        PNID,
        json!([]),
        json!([text_message("w1", "966500000009", "أولاً")]),
    );
    let by_bsuid = notification(
        PNID,
        json!([{"user_id": "SA.42", "profile": {"name": "خالد"}}]),
        json!([{"from_user_id": "SA.42", "id": "w2", "type": "text", "text": {"body": "ثانياً"}}]),
    );
    let both = notification(
        PNID,
        json!([{"wa_id": "966500000009", "user_id": "SA.42"}]),
        json!([{"from": "966500000009", "from_user_id": "SA.42", "id": "w3", "type": "text", "text": {"body": "ثالثاً"}}]),
    );
    for body in [by_phone, by_bsuid] {
        assert_eq!(app.post_whatsapp(&meta_bytes(&body)).await.status(), 200);
    }
    assert_eq!(app.count("SELECT count(*) FROM contacts").await, 2);
    // Rolling summaries on both sides: the phone side's reaches past the other side's message.
    let admin = &app.test_db.db().admin;
    let w2_seq: i64 =
        sqlx::query_scalar("SELECT seq FROM messages WHERE provider_message_id = 'w2'")
            .fetch_one(admin)
            .await
            .unwrap();
    for (message, summary, through) in [("w1", "ملخص أ", Some(w2_seq)), ("w2", "ملخص ب", None)]
    {
        sqlx::query(
            "UPDATE conversations SET summary = $2, summary_through_seq = $3
             WHERE id = (SELECT conversation_id FROM messages WHERE provider_message_id = $1)",
        )
        .bind(message)
        .bind(summary)
        .bind(through)
        .execute(admin)
        .await
        .unwrap();
    }
    assert_eq!(app.post_whatsapp(&meta_bytes(&both)).await.status(), 200);
    let (summary, through): (String, Option<i64>) =
        sqlx::query_as("SELECT summary, summary_through_seq FROM conversations")
            .fetch_one(admin)
            .await
            .unwrap();
    assert!(
        summary.contains("ملخص أ") && summary.contains("ملخص ب"),
        "{summary}"
    );
    assert!(
        through.is_none_or(|t| t < w2_seq),
        "a moved message the source's summary did not cover stays visible: {through:?}"
    );
    assert_eq!(app.count("SELECT count(*) FROM contacts").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM conversations").await, 1);
    assert_eq!(
        app.count("SELECT count(DISTINCT conversation_id) FROM messages")
            .await,
        1
    );
    assert_eq!(app.count("SELECT count(*) FROM messages").await, 3);
    assert_eq!(
        app.count("SELECT count(*) FROM contact_identities").await,
        2
    );
    assert_eq!(app.count("SELECT count(*) FROM contact_merges").await, 1);
    assert_eq!(
        app.count("SELECT count(*) FROM contacts WHERE display_name = 'خالد'")
            .await,
        1
    );
}

/// Statuses only move forward: `read` before `delivered` ends as `read`; a late `failed` does not
/// undo delivery; repeated statuses are stored once.
#[tokio::test]
async fn statuses_only_move_forward() {
    let app = spawn_app().await;
    let tenant = tenant_with_number(&app, "riyadh-gold", PNID).await;
    // An outbound message as the dispatcher leaves it: sent, with the provider's id.
    let mut tx = begin_tenant(&app.test_db.db().app, tenant).await.unwrap();
    let contact: uuid::Uuid =
        sqlx::query_scalar("INSERT INTO contacts (tenant_id) VALUES ($1) RETURNING id")
            .bind(tenant)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    let conversation: uuid::Uuid =
        sqlx::query_scalar("INSERT INTO conversations (tenant_id, contact_id, channel) VALUES ($1, $2, 'whatsapp') RETURNING id")
            .bind(tenant)
            .bind(contact)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    sqlx::query(
        "INSERT INTO messages (tenant_id, conversation_id, direction, channel, provider_message_id, kind, body, status)
         VALUES ($1, $2, 'outbound', 'whatsapp', 'wamid.OUT', 'text', 'أهلاً', 'sent')",
    )
    .bind(tenant)
    .bind(conversation)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let status = |s: &str| {
        json!({"object": "whatsapp_business_account", "entry": [{"id": "W", "changes": [{"field": "messages", "value": {
            "metadata": {"phone_number_id": PNID},
            "statuses": [{"id": "wamid.OUT", "status": s, "timestamp": "1749416400", "recipient_id": "966500000001",
                          "errors": if s == "failed" { json!([{"code": 131026, "title": "Message undeliverable"}]) } else { Value::Null }}]}}]}]})
    };
    let current = || async {
        sqlx::query_scalar::<_, String>(
            "SELECT status FROM messages WHERE provider_message_id = 'wamid.OUT'",
        )
        .fetch_one(&app.test_db.db().admin)
        .await
        .unwrap()
    };
    // (status posted, status after it, why)
    let steps = [
        ("read", "read", "read moves sent forward"),
        (
            "delivered",
            "read",
            "delivered after read must not move it back",
        ),
        ("failed", "read", "a late failure does not undo a read"),
        ("read", "read", "a repeated status changes nothing"),
    ];
    for (posted, after, why) in steps {
        assert_eq!(
            app.post_whatsapp(&meta_bytes(&status(posted)))
                .await
                .status(),
            200
        );
        assert_eq!(current().await, after, "{why}");
    }
    assert_eq!(app.count("SELECT count(*) FROM message_statuses").await, 3);
}
