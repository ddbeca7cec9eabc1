//! The knowledge base end to end: `wasit kb ingest` (idempotent, changes and deletions, a bad
//! file), `wasit kb search` filtered by tenant, a process killed mid-ingest whose index agrees
//! with PostgreSQL after a restart, `/api/v1/articles`, and the `search_knowledge` tool inside
//! a real turn.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use api::auth::Role;
use api::testkit::llm::Reply;
use serde_json::{Value, json};

use crate::conversation::{WAIT, harness_full, notification, text};
use crate::helpers::{TestDb, spawn_app};

const ARTICLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../knowledge-base/articles");

fn wasit(db: &TestDb, data_dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasit"));
    cmd.args(args)
        .env("DATABASE_URL", &db.url)
        .env("WASIT_DATA_DIR", data_dir)
        .env_remove("QDRANT_URL")
        .env_remove("EMBEDDING_MODEL")
        .env_remove("RUST_LOG");
    cmd
}

fn run(mut cmd: Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("the wasit binary runs");
    (
        status.code().unwrap_or(-1),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

fn write_article(dir: &Path, name: &str, title: &str, body: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        path,
        format!("+++\ntitle = \"{title}\"\nlanguage = \"ar\"\ntags = [\"test\"]\n+++\n{body}\n"),
    )
    .unwrap();
}

/// Ingest is idempotent and mirrors the directory; search is filtered to the tenant and the
/// global articles; a file that does not parse is reported with its line and changes nothing.
#[tokio::test]
async fn ingest_mirrors_the_directory_and_search_keeps_tenants_apart() {
    let db = TestDb::new().await;
    db.tenant("riyadh-gold").await;
    db.tenant("jeddah-gold").await;
    let data = tempfile::tempdir().unwrap();

    let (code, out, err) = run(wasit(
        &db,
        data.path(),
        &["kb", "ingest", ARTICLES, "--global"],
    ));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("36 files: 36 new, 0 changed, 0 unchanged, 0 removed, 0 failed"),
        "{out}"
    );
    let (code, out, _) = run(wasit(
        &db,
        data.path(),
        &["kb", "ingest", ARTICLES, "--global"],
    ));
    assert_eq!(code, 0);
    assert!(
        out.starts_with("36 files: 0 new, 0 changed, 36 unchanged"),
        "{out}"
    );
    assert!(out.contains("indexed 0 articles"), "{out}");

    let riyadh = tempfile::tempdir().unwrap();
    write_article(
        riyadh.path(),
        "vault.md",
        "خزنة الرياض",
        "# الخزنة\n\nخزنة الرياض السرية تحفظ سبائك العملاء في حي العليا.",
    );
    write_article(
        riyadh.path(),
        "offers/eid.md",
        "عرض العيد",
        "# العرض\n\nخصم العيد على المشغولات الذهبية.",
    );
    let jeddah = tempfile::tempdir().unwrap();
    write_article(
        jeddah.path(),
        "vault.md",
        "خزنة جدة",
        "# الخزنة\n\nخزنة جدة السرية تحفظ سبائك العملاء في حي الشاطئ.",
    );
    for (slug, dir) in [("riyadh-gold", &riyadh), ("jeddah-gold", &jeddah)] {
        let dir = dir.path().to_str().unwrap();
        let (code, out, err) = run(wasit(
            &db,
            data.path(),
            &["kb", "ingest", dir, "--tenant", slug],
        ));
        assert_eq!(code, 0, "{out}{err}");
    }

    let search = |slug: &str, q: &str| {
        let (code, out, err) = run(wasit(
            &db,
            data.path(),
            &["kb", "search", q, "--tenant", slug, "--limit", "10"],
        ));
        assert_eq!(code, 0, "{err}");
        out
    };
    let out = search("riyadh-gold", "الخزنه السريه");
    let first: Vec<&str> = out.lines().next().unwrap().split('\t').collect();
    assert_eq!(first[0], "1");
    assert!(first[1].parse::<f32>().unwrap() > 0.0);
    assert_eq!(first[2], "خزنة الرياض", "{out}");
    assert_eq!(first[3], "الخزنة");
    assert!(!out.contains("جدة"), "riyadh saw jeddah's article:\n{out}");
    assert!(!search("jeddah-gold", "خزنة الرياض السرية").contains("خزنة الرياض"));
    // The global articles are everyone's.
    for slug in ["riyadh-gold", "jeddah-gold"] {
        assert!(search(slug, "ما هي مدة ضمان الذهب؟").lines().count() > 0);
    }
    // Eastern Arabic digits and diacritics match their plain forms.
    assert!(search("riyadh-gold", "خِزْنَة العُلَيا").contains("خزنة الرياض"));

    // A changed file, a deleted one, a broken one.
    write_article(
        riyadh.path(),
        "vault.md",
        "خزنة الرياض",
        "# الخزنة\n\nالخزنة انتقلت إلى حي الملقا.",
    );
    std::fs::remove_file(riyadh.path().join("offers/eid.md")).unwrap();
    std::fs::write(
        riyadh.path().join("broken.md"),
        "+++\ntitle = \"x\"\nlanguage = \"arabic\"\n+++\nنص\n",
    )
    .unwrap();
    let dir = riyadh.path().to_str().unwrap();
    let (code, out, err) = run(wasit(
        &db,
        data.path(),
        &["kb", "ingest", dir, "--tenant", "riyadh-gold"],
    ));
    assert_eq!(code, 1, "a broken file fails the command: {out}{err}");
    assert!(
        out.starts_with("2 files: 0 new, 1 changed, 0 unchanged, 1 removed, 1 failed"),
        "{out}"
    );
    assert!(err.contains("broken.md:3: language \"arabic\""), "{err}");
    assert!(search("riyadh-gold", "الملقا").contains("خزنة الرياض"));
    assert!(!search("riyadh-gold", "خصم العيد").contains("عرض العيد"));

    let (code, out, err) = run(wasit(&db, data.path(), &["kb", "check"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("agrees"), "{out}");

    // Usage errors exit 2, change nothing, and say what to do.
    let empty = tempfile::tempdir().unwrap();
    let empty = empty.path().to_str().unwrap();
    let (code, _, err) = run(wasit(
        &db,
        data.path(),
        &["kb", "ingest", empty, "--tenant", "riyadh-gold"],
    ));
    assert_eq!(code, 2);
    assert!(
        err.contains("no *.md articles") && err.contains("nothing was changed"),
        "{err}"
    );
    assert!(search("riyadh-gold", "الملقا").contains("خزنة الرياض"));
    let (code, _, err) = run(wasit(
        &db,
        data.path(),
        &["kb", "ingest", "--tenant", "riyadh-gold"],
    ));
    assert_eq!(code, 2);
    assert!(err.contains("give the directory"), "{err}");
    let (code, _, err) = run(wasit(
        &db,
        data.path(),
        &[
            "user",
            "create",
            "--tenant",
            "global",
            "--email",
            "x@example.com",
            "--role",
            "admin",
        ],
    ));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--global"), "{err}");
    let (code, _, err) = run(wasit(&db, data.path(), &["kb", "ingest", dir]));
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(wasit(
        &db,
        data.path(),
        &["kb", "search", "ذهب", "--tenant", "nobody"],
    ));
    assert_eq!(code, 2);
    assert!(err.contains("wasit tenant create"), "{err}");
}

/// SIGKILL while `wasit kb ingest` is indexing: the next process finds the index behind
/// PostgreSQL, catches up, and then agrees with it exactly.
#[tokio::test]
async fn an_ingest_killed_midway_leaves_an_index_that_catches_up_with_postgres() {
    let db = TestDb::new().await;
    db.tenant("riyadh-gold").await;
    let data = tempfile::tempdir().unwrap();
    let articles = tempfile::tempdir().unwrap();
    let words = [
        "ذهب",
        "سبيكة",
        "ضمان",
        "توصيل",
        "خزنة",
        "عيار",
        "فاتورة",
        "استرجاع",
        "عمولة",
        "مسوق",
    ];
    for i in 0..400 {
        let mut body = format!("# المقال {i}\n\n");
        for p in 0..6 {
            body.push_str(&format!("## القسم {p}\n\n"));
            for s in 0..8 {
                body.push_str(&format!(
                    "الجملة {s} عن {} و{} رقم {}. ",
                    words[(i + s) % 10],
                    words[(p + s * 3) % 10],
                    i * 100 + s
                ));
            }
            body.push_str("\n\n");
        }
        write_article(
            articles.path(),
            &format!("a{i:03}.md"),
            &format!("مقال {i}"),
            &body,
        );
    }
    let dir = articles.path().to_str().unwrap();
    let mut child = wasit(
        &db,
        data.path(),
        &["kb", "ingest", dir, "--tenant", "riyadh-gold"],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    // Wait until indexing has begun (some articles recorded as indexed), then kill.
    let admin = &db.db().admin;
    let started = Instant::now();
    let at_kill = loop {
        let indexed: i64 =
            sqlx::query_scalar("SELECT count(*) FROM articles WHERE indexed_hash IS NOT NULL")
                .fetch_one(admin)
                .await
                .unwrap();
        if indexed > 0 {
            child.kill().unwrap();
            child.wait().unwrap();
            break indexed;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the ingest ended before it could be killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "indexing never began"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM articles")
        .fetch_one(admin)
        .await
        .unwrap();
    assert_eq!(
        total, 400,
        "every article was in PostgreSQL before indexing began"
    );
    assert!(at_kill < 400, "killed midway ({at_kill} of 400 indexed)");
    println!("killed with {at_kill} of 400 articles recorded as indexed");

    let (code, out, err) = run(wasit(&db, data.path(), &["kb", "check"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("the index agrees with PostgreSQL"), "{out}");
    let indexed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM articles WHERE indexed_hash = content_hash")
            .fetch_one(admin)
            .await
            .unwrap();
    assert_eq!(indexed, 400);
    let (code, out, _) = run(wasit(
        &db,
        data.path(),
        &["kb", "search", "المقال 399", "--tenant", "riyadh-gold"],
    ));
    assert_eq!(code, 0);
    assert!(out.lines().any(|l| l.contains("مقال 399")), "{out}");

    // SIGKILL during a rebuild, once it has recorded its new generation: the next process finds
    // the index short of that generation's articles and completes it.
    let generation = || async {
        sqlx::query_scalar::<_, uuid::Uuid>("SELECT generation FROM kb_indexes")
            .fetch_one(admin)
            .await
            .unwrap()
    };
    let before = generation().await;
    let mut child = wasit(&db, data.path(), &["kb", "reindex"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while generation().await == before {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the rebuild ended before it could be killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the rebuild never began"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let rebuilt: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM articles a JOIN kb_indexes k ON a.indexed_generation = k.generation",
    )
    .fetch_one(admin)
    .await
    .unwrap();
    assert!(
        rebuilt < 400,
        "killed midway through the rebuild ({rebuilt} of 400)"
    );
    let (code, out, err) = run(wasit(&db, data.path(), &["kb", "check"]));
    assert_eq!(code, 0, "{out}{err}");

    // The index's files lost (a wiped volume): PostgreSQL's record no longer counts, and the
    // next process rebuilds the index from it.
    std::fs::remove_dir_all(data.path().join("knowledge")).unwrap();
    let (code, out, err) = run(wasit(&db, data.path(), &["kb", "check"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("the index agrees with PostgreSQL"), "{out}");
    let (code, out, _) = run(wasit(
        &db,
        data.path(),
        &["kb", "search", "المقال 17", "--tenant", "riyadh-gold"],
    ));
    assert_eq!(code, 0);
    assert!(out.lines().any(|l| l.contains("مقال 17")), "{out}");
}

/// `/api/v1/articles`: written articles are searchable at once by their tenant only, replaced
/// and deleted; bad input changes nothing.
#[tokio::test]
async fn articles_through_the_api_are_indexed_and_kept_to_their_tenant() {
    // What /articles/search finds for `q`, with `token`'s tenant.
    async fn search(app: &crate::helpers::TestApp, token: &str, q: &str) -> Value {
        let q: String = url::form_urlencoded::byte_serialize(q.as_bytes()).collect();
        app.get_json(&format!("/api/v1/articles/search?q={q}"), token)
            .await
    }
    async fn nothing(app: &crate::helpers::TestApp, token: &str, q: &str) -> bool {
        search(app, token, q).await["items"]
            .as_array()
            .unwrap()
            .is_empty()
    }
    let app = spawn_app().await;
    let a = app.test_db.tenant("riyadh-gold").await;
    let b = app.test_db.tenant("jeddah-gold").await;
    let token_a = app.user_token(a, Role::PromptEngineer).await;
    let token_b = app.user_token(b, Role::Admin).await;
    let body = json!({"title": "سياسة الاستبدال", "language": "ar", "tags": ["استبدال"],
        "body": "## الاستبدال\n\nيُستبدل المشغول الذهبي خلال سبعة أيام مع الفاتورة الأصلية."});
    let r = app
        .send("post", "/api/v1/articles", Some(&token_a), Some(&body))
        .await;
    assert_eq!(r.status(), 201);
    let article: Value = r.json().await.unwrap();
    let id = article["id"].as_str().unwrap().to_owned();
    assert_eq!(article["chunks"], 1);
    assert_eq!(
        article["indexed"], true,
        "indexed before the answer: {article}"
    );

    let found = search(&app, &token_a, "استبدال المشغولات").await;
    assert_eq!(found["items"][0]["article_id"], id.as_str(), "{found}");
    assert_eq!(found["items"][0]["heading_path"], json!(["الاستبدال"]));
    let indexed: Value = app
        .get_json(&format!("/api/v1/articles/{id}"), &token_a)
        .await;
    assert_eq!(indexed["indexed"], true);
    assert!(nothing(&app, &token_b, "استبدال المشغولات").await);
    let r = app
        .send(
            "get",
            &format!("/api/v1/articles/{id}"),
            Some(&token_b),
            None,
        )
        .await;
    assert_eq!(r.status(), 404);

    // Bad input: an unknown language, an unknown field, an empty body — 422/400, nothing stored.
    for bad in [
        json!({"title": "x", "language": "arabic", "body": "نص"}),
        json!({"title": "x", "language": "ar", "body": "نص", "tenant_id": b.0}),
        json!({"title": "x", "language": "ar", "body": "  "}),
        json!({"title": "x\u{0}y", "language": "ar", "body": "نص"}),
        json!({"title": "x", "language": "ar", "body": "ذهب ".repeat(50_001)}),
    ] {
        let r = app
            .send("post", "/api/v1/articles", Some(&token_a), Some(&bad))
            .await;
        assert!(
            matches!(r.status().as_u16(), 400 | 422),
            "{bad}: {}",
            r.status()
        );
    }
    assert_eq!(
        app.count("SELECT count(*) FROM articles WHERE source LIKE 'api:%'")
            .await,
        1
    );

    let replaced = json!({"title": "سياسة الاستبدال", "language": "ar",
        "body": "## الاستبدال\n\nالاستبدال متاح خلال عشرة أيام في فرع العليا."});
    let r = app
        .send(
            "put",
            &format!("/api/v1/articles/{id}"),
            Some(&token_a),
            Some(&replaced),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        search(&app, &token_a, "فرع العليا").await["items"][0]["article_id"],
        id.as_str()
    );
    assert!(nothing(&app, &token_a, "الفاتورة الأصلية").await);

    let r = app
        .send(
            "delete",
            &format!("/api/v1/articles/{id}"),
            Some(&token_a),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    assert!(nothing(&app, &token_a, "فرع العليا").await);
    let r = app
        .send(
            "get",
            &format!("/api/v1/articles/{id}"),
            Some(&token_a),
            None,
        )
        .await;
    assert_eq!(r.status(), 404);
    assert!(
        app.knowledge
            .check(&app.test_db.db().admin)
            .await
            .unwrap()
            .is_empty()
    );
}

/// The whole server with the runtime, and one Arabic article of the tenant's written through
/// the API (and so indexed).
async fn harness_with_article(title: &str, body: &str) -> crate::conversation::Harness {
    let h = harness_full(|_| {}, |_| {}).await;
    let token = h.app.user_token(h.tenant, Role::Admin).await;
    let article = json!({"title": title, "language": "ar", "body": body});
    let r = h
        .app
        .send("post", "/api/v1/articles", Some(&token), Some(&article))
        .await;
    assert_eq!(r.status(), 201);
    h
}

/// In a real turn, the model calls `search_knowledge`: the tenant's article comes back with its
/// citation, and the model's answer is sent.
#[tokio::test]
async fn the_search_knowledge_tool_answers_inside_a_turn() {
    let h = harness_with_article(
        "ضمان الذهب",
        "# الضمان الذهبي\n\n## المدة\n\nكل سبيكة مضمونة مدى الحياة ضد الغش في العيار.",
    )
    .await;
    h.llm.respond_with(|req| {
        let last = req["messages"].as_array().unwrap().last().unwrap();
        if last["role"] == "tool" {
            let result: Value = serde_json::from_str(last["content"].as_str().unwrap()).unwrap();
            Reply::Text(format!(
                "حسب «{}»: مضمونة مدى الحياة.",
                result["results"][0]["citation"].as_str().unwrap_or("?")
            ))
        } else {
            // A model that passes a foreign tenant in the arguments is refused: the schema has no such field,
            // and the tenant is the conversation's anyway.
            Reply::ToolCalls(vec![(
                "search_knowledge".into(),
                json!({"query": "مدة ضمان السبائك"}),
            )])
        }
    });
    crate::conversation::qualified_lead(&h, "966500000077", "سارة").await;
    h.app
        .post_whatsapp(&notification(&[text(
            "k1",
            "966500000077",
            "كم مدة ضمان السبيكة؟",
        )]))
        .await;
    let sent = h.graph.wait_for_delivered(1, WAIT).await;
    assert_eq!(
        sent[0].body["text"]["body"],
        "حسب «ضمان الذهب › الضمان الذهبي › المدة»: مضمونة مدى الحياة."
    );
    let calls: Value = sqlx::query_scalar("SELECT tool_calls FROM ai_conversations")
        .fetch_one(&h.app.test_db.db().admin)
        .await
        .unwrap();
    assert_eq!(calls[0]["name"], "search_knowledge");
    assert!(
        calls[0]["result"]["results"][0]["text"]
            .as_str()
            .unwrap()
            .contains("مدى الحياة")
    );
    // The tool was offered with its schema.
    let first = &h.llm.requests()[0];
    assert!(
        first["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["function"]["name"] == "search_knowledge")
    );
}

/// With `EMBEDDING_MODEL` and an OpenAI-compatible endpoint, the knowledge base is hybrid: chunks
/// and queries are embedded through `/embeddings` (in batches), the index holds dense vectors
/// beside BM25, and search fuses the two; the vectors' size is learnt from the endpoint.
#[tokio::test]
async fn with_an_embedding_model_retrieval_is_hybrid() {
    let db = TestDb::new().await;
    let tenant = db.tenant("riyadh-gold").await;
    let llm = api::testkit::llm::FakeLlm::start().await;
    let data = tempfile::tempdir().unwrap();
    let (url, dir) = (llm.url(), data.path().to_str().unwrap().to_owned());
    let settings = runtime::Settings::from_lookup(|key| match key {
        "LLM_BASE_URL" => Some(url.clone()),
        "EMBEDDING_MODEL" => Some("text-embedding-3-small".into()),
        "WASIT_DATA_DIR" => Some(dir.clone()),
        _ => None,
    })
    .unwrap();
    let kb = api::wiring::knowledge(&settings, db.db().app.clone())
        .await
        .unwrap();
    assert_eq!(
        kb.embedder().map(|e| (e.model().to_owned(), e.dims())),
        Some(("text-embedding-3-small".to_owned(), 8))
    );
    assert!(
        kb.index()
            .name()
            .contains("hybrid-text-embedding-3-small-8")
    );
    let article = |title: &str, body: &str| {
        knowledge_base::service::ArticleInput::from_api(
            format!("api:{title}"),
            knowledge_base::article::ArticleMeta {
                title: title.into(),
                language: "ar".into(),
                tags: Vec::new(),
                sector: None,
            },
            body.into(),
        )
    };
    kb.put(
        tenant,
        &article("التوصيل", "# التوصيل\n\nالتوصيل مجاني داخل الرياض."),
    )
    .await
    .unwrap();
    kb.put(
        tenant,
        &article("الضمان", "# الضمان\n\nضمان مدى الحياة على السبائك."),
    )
    .await
    .unwrap();
    let before = llm.requests().len();
    let report = kb.sync(&()).await.unwrap();
    assert_eq!((report.articles, report.chunks), (2, 2));
    let embedded: Vec<Value> = llm.requests()[before..].to_vec();
    assert_eq!(embedded.len(), 1, "one batch for both chunks");
    assert_eq!(embedded[0]["model"], "text-embedding-3-small");
    assert_eq!(embedded[0]["input"].as_array().unwrap().len(), 2);

    let hits = kb.search(tenant, "ضمان السبائك", 5).await.unwrap();
    assert_eq!(hits[0].title, "الضمان");
    // Fused: the other article comes back through the dense search although no word matches.
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert!(kb.check(&db.db().admin).await.unwrap().is_empty());
}

/// `sales` hands a factual question to the `knowledge` agent, which runs with its own prompt,
/// searches, and answers citing the passage; the active agent is kept on the conversation.
#[tokio::test]
async fn the_knowledge_agent_takes_a_factual_question_and_cites_its_source() {
    let h = harness_with_article(
        "التوصيل",
        "# التوصيل\n\n## الرسوم\n\nالتوصيل مجاني داخل الرياض للطلبات فوق ٥٠٠٠ ريال.",
    )
    .await;
    h.llm.respond_with(|req| {
        let system = req["messages"][0]["content"].as_str().unwrap_or_default();
        let last = req["messages"].as_array().unwrap().last().unwrap();
        let knowledge = system.contains("knowledge assistant");
        match (knowledge, last["role"].as_str()) {
            (false, Some("tool")) => Reply::Text("سأحولك إلى زميلي المختص.".into()),
            (false, _) => Reply::ToolCalls(vec![(
                "handoff".into(),
                json!({"to_agent": "knowledge", "reason": "سؤال عن رسوم التوصيل"}),
            )]),
            (true, Some("tool")) => {
                let result: Value =
                    serde_json::from_str(last["content"].as_str().unwrap()).unwrap();
                let hit = &result["results"][0];
                Reply::Text(format!(
                    "{} (حسب «{}»)",
                    hit["text"].as_str().unwrap_or("?"),
                    hit["citation"].as_str().unwrap_or("?")
                ))
            }
            (true, _) => Reply::ToolCalls(vec![(
                "search_knowledge".into(),
                json!({"query": "رسوم التوصيل داخل الرياض"}),
            )]),
        }
    });
    crate::conversation::qualified_lead(&h, "966500000088", "خالد").await;
    h.app
        .post_whatsapp(&notification(&[text(
            "d1",
            "966500000088",
            "كم رسوم التوصيل؟",
        )]))
        .await;
    // The handoff: the knowledge agent answers at once, in a turn of its own; sales says nothing.
    let sent = h.graph.wait_for_delivered(1, WAIT).await;
    let answer =
        "التوصيل مجاني داخل الرياض للطلبات فوق ٥٠٠٠ ريال. (حسب «التوصيل › التوصيل › الرسوم»)";
    assert_eq!(sent[0].body["text"]["body"], answer);
    // The next message stays with the knowledge agent.
    h.app
        .post_whatsapp(&notification(&[text("d2", "966500000088", "داخل الرياض")]))
        .await;
    let sent = h.graph.wait_for_delivered(2, WAIT).await;
    assert_eq!(sent[1].body["text"]["body"], answer);
    // Through the REST API: the conversation stays with the knowledge agent, and its audited
    // turns show the search and the passage cited.
    let manager = h.app.token(h.tenant, Role::SalesManager);
    let (conversation, turns) = crate::agents::latest_conversation_turns(&h, &manager).await;
    assert_eq!(conversation["active_agent"], "knowledge");
    let agents: Vec<&str> = turns["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["agent"].as_str().unwrap())
        .collect();
    assert_eq!(agents, ["sales", "knowledge", "knowledge"]);
    assert_eq!(
        turns["items"][1]["tool_calls"][0]["name"],
        "search_knowledge"
    );
    assert_eq!(
        turns["items"][1]["tool_calls"][0]["result"]["results"][0]["citation"],
        "التوصيل › التوصيل › الرسوم"
    );
    // The knowledge agent was told why it has the conversation.
    let system = h.llm.requests()[1]["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        system.contains("given this conversation by the sales agent. Reason: سؤال عن رسوم التوصيل"),
        "{system}"
    );
}
