//! `wasit chat`: a prompt engineer talks to the agents through the runtime's turn — the router, a
//! handoff answered at once, tools acting on the tenant's CRM, replies through the outbox — with
//! one reply per output line when stdin is not a terminal, and prompt edits live.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use api::testkit::llm::{FakeLlm, Reply};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use crate::agents::{
    add_ramadan_offer, agent_of, call, last_contact_text, prompts_copy, system_of, tool_result,
};
use crate::helpers::TestDb;

const PROMPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../prompts");

/// A database with one tenant, the model stand-in and a data directory, for `wasit chat` runs.
struct ChatEnv {
    db: TestDb,
    llm: FakeLlm,
    data: tempfile::TempDir,
}

impl ChatEnv {
    async fn new() -> Self {
        let db = TestDb::new().await;
        db.tenant("riyadh-gold").await;
        Self {
            db,
            llm: FakeLlm::start().await,
            data: tempfile::tempdir().unwrap(),
        }
    }

    fn command(&self, prompts: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasit"));
        cmd.arg("chat")
            .args(args)
            .env("DATABASE_URL", &self.db.url)
            .env("WASIT_DATA_DIR", self.data.path())
            .env("WASIT_PROMPTS_DIR", prompts)
            .env("LLM_BASE_URL", self.llm.url())
            .env_remove("QDRANT_URL")
            .env_remove("EMBEDDING_MODEL")
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `wasit chat ARGS` with the shipped prompts over `input` to the end: (exit code,
    /// stdout lines, stderr).
    async fn run(&self, args: &[&str], input: &str) -> (i32, Vec<String>, String) {
        let mut child = self
            .command(Path::new(PROMPTS), args)
            .spawn()
            .expect("the wasit binary runs");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).await.unwrap();
        drop(stdin);
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("wasit chat ends at the end of its input")
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }
}

async fn next_line(lines: &mut tokio::io::Lines<BufReader<ChildStdout>>) -> String {
    tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("a reply within 30 s")
        .unwrap()
        .expect("a reply line")
}

/// An Arabic conversation at the terminal: intake creates the lead and hands off, the qualifier
/// answers at once (its two-line reply on one output line), then the next message; a second
/// session as the same contact continues the same conversation, and `--agent` pins the agent.
#[tokio::test]
async fn a_terminal_conversation_runs_through_the_router_handoffs_and_the_crm() {
    let env = ChatEnv::new().await;
    env.llm.respond_with(|req| {
        let said = last_contact_text(req);
        match (agent_of(req), tool_result(req)) {
            ("intake", None) => Reply::ToolCalls(vec![
                call(
                    "create_lead",
                    json!({"name": "سارة", "need": "طقم ذهب عيار ٢١ لحفل زفاف"}),
                ),
                call(
                    "handoff",
                    json!({"to_agent": "qualifier", "reason": "عميلة جديدة تريد طقم ذهب"}),
                ),
            ]),
            ("qualifier", None) if said.contains("الميزانية") => {
                Reply::Text("شكرًا يا سارة، سجلت الميزانية.".into())
            }
            ("qualifier", None) => Reply::Text("أهلًا سارة!\nكم الميزانية التقريبية؟".into()),
            ("sales", None) => Reply::Text("لدينا أطقم عيار ٢١ بتصاميم خليجية.".into()),
            (agent, result) => panic!("unexpected request for {agent}: {result:?}"),
        }
    });
    let (code, out, err) = env
        .run(
            &["--tenant", "riyadh-gold", "--contact", "سارة"],
            "السلام عليكم، أبحث عن طقم ذهب عيار ٢١ لحفل زفاف\n\nالميزانية حوالي ٣٠ ألف ريال\n",
        )
        .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        [
            "qualifier: أهلًا سارة!\\nكم الميزانية التقريبية؟",
            "qualifier: شكرًا يا سارة، سجلت الميزانية.",
        ]
    );
    // What the agents did is shown on stderr.
    assert!(err.contains("intake called create_lead"), "{err}");
    assert!(
        err.contains("intake handed the conversation to qualifier"),
        "{err}"
    );

    // The CRM and the conversation are the runtime's: the lead with its source, the messages on
    // the chat channel, every reply sent through the outbox.
    let admin = &env.db.db().admin;
    let (name, source): (String, String) = sqlx::query_as(
        "SELECT c.display_name, l.source FROM leads l JOIN contacts c ON c.id = l.contact_id",
    )
    .fetch_one(admin)
    .await
    .unwrap();
    assert_eq!((name.as_str(), source.as_str()), ("سارة", "manual"));
    let counts: (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE direction = 'inbound'),
                count(*) FILTER (WHERE direction = 'outbound' AND status = 'sent'),
                (SELECT count(*) FROM outbox WHERE state = 'sent' AND channel = 'chat')
         FROM messages WHERE channel = 'chat'",
    )
    .fetch_one(admin)
    .await
    .unwrap();
    assert_eq!(counts, (2, 2, 2));

    // The same contact again: the same conversation, now answered by the pinned agent.
    let pinned = [
        "--tenant",
        "riyadh-gold",
        "--contact",
        "سارة",
        "--agent",
        "sales",
    ];
    let (code, out, err) = env.run(&pinned, "ما التصاميم المتوفرة؟\n").await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, ["sales: لدينا أطقم عيار ٢١ بتصاميم خليجية."]);
    let last = env.llm.requests().last().unwrap().clone();
    let history = last["messages"].to_string();
    assert!(
        history.contains("الميزانية حوالي ٣٠ ألف ريال"),
        "sales sees the history"
    );
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM conversations")
            .fetch_one(admin)
            .await
            .unwrap(),
        1
    );
}

/// A prompt edited while `wasit chat` runs is used by its next turn.
#[tokio::test]
async fn a_prompt_edited_during_a_chat_is_used_by_the_next_turn() {
    let env = ChatEnv::new().await;
    let llm = &env.llm;
    llm.respond_with(|_| Reply::Text("حاضر".into()));
    let dir = prompts_copy();
    let mut child: Child = env
        .command(dir.path(), &["--tenant", "riyadh-gold", "--agent", "sales"])
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();

    stdin.write_all("مرحبا\n".as_bytes()).await.unwrap();
    assert_eq!(next_line(&mut lines).await, "sales: حاضر");
    assert!(!system_of(llm.requests().last().unwrap()).contains("عرض رمضان"));

    add_ramadan_offer(&dir.path().join("sales.md"));
    tokio::time::sleep(Duration::from_secs(1)).await;

    stdin.write_all("ما الجديد؟\n".as_bytes()).await.unwrap();
    assert_eq!(next_line(&mut lines).await, "sales: حاضر");
    assert!(
        system_of(llm.requests().last().unwrap()).contains("اذكر عرض رمضان"),
        "the edit is live"
    );
    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}

/// Usage errors exit 2 and say what to do; nothing is stored.
#[tokio::test]
async fn chat_usage_errors_say_what_to_fix() {
    let env = ChatEnv::new().await;
    let (code, _, err) = env
        .run(&["--tenant", "riyadh-gold", "--agent", "closer"], "مرحبا\n")
        .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("\"closer\" is not an agent kind"), "{err}");
    assert!(err.contains("meeting_scheduler"), "{err}");
    let (code, _, err) = env.run(&["--tenant", "nobody"], "مرحبا\n").await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nobody"), "{err}");
    assert_eq!(env.llm.answered(), 0);
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM messages")
            .fetch_one(&env.db.db().admin)
            .await
            .unwrap(),
        0
    );
}

/// A tenant's overlay (`prompts/tenants/<slug>/<kind>.md`) shapes that tenant's agent only, and
/// each turn records the file it used.
#[tokio::test]
async fn a_tenants_overlay_shapes_only_that_tenants_agent() {
    let env = ChatEnv::new().await;
    env.db.tenant("jeddah-jewels").await;
    env.llm.respond_with(|_| Reply::Text("حاضر".into()));
    for tenant in ["jeddah-jewels", "riyadh-gold"] {
        let (code, out, err) = env
            .run(&["--tenant", tenant, "--agent", "sales"], "أبغى شبكة\n")
            .await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, ["sales: حاضر"]);
    }
    let requests = env.llm.requests();
    assert!(system_of(&requests[0]).contains("محل مجوهرات في جدة"));
    assert!(!system_of(&requests[1]).contains("جدة"));
    let paths: Vec<(String, String)> = sqlx::query_as(
        "SELECT t.slug, p.path FROM prompt_versions p JOIN tenants t ON t.id = p.tenant_id
         ORDER BY t.slug",
    )
    .fetch_all(&env.db.db().admin)
    .await
    .unwrap();
    assert_eq!(
        paths,
        [
            (
                "jeddah-jewels".to_owned(),
                "tenants/jeddah-jewels/sales.md".to_owned()
            ),
            ("riyadh-gold".to_owned(), "sales.md".to_owned()),
        ]
    );
}
