//! The `wasit` command line: help for every command, usage errors exit 2 with a message that says
//! what to fix, and the operator commands work against a real database.

use std::process::{Command, Output};

use api::auth::JwtKeys;
use secrecy::SecretString;

use crate::helpers::{JWT_SECRET, TestDb};

fn wasit(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasit"));
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .env_remove("RUST_LOG");
    cmd
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("the wasit binary runs");
    (
        status.code().expect("exited normally"),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

/// Every command and subcommand has complete `--help`: usage, its options, exit 0.
#[test]
fn every_command_has_help() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &[],
            &[
                "serve",
                "migrate",
                "tenant",
                "user",
                "token",
                "channel",
                "kb",
                "prompts",
                "chat",
                "DATABASE_URL",
                "Exit codes",
            ],
        ),
        (&["serve"], &["SIGTERM", "WASIT_DATA_DIR"]),
        (&["migrate"], &["migrations"]),
        (&["tenant"], &["create"]),
        (&["tenant", "create"], &["--slug", "--name"]),
        (&["user"], &["create"]),
        (
            &["user", "create"],
            &["--tenant", "--email", "--role", "--password", "sales_rep"],
        ),
        (
            &["token"],
            &["--tenant", "--role", "--user", "--ttl-minutes"],
        ),
        (&["channel"], &["add"]),
        (&["channel", "add"], &["whatsapp", "sms", "email"]),
        (
            &["channel", "add", "whatsapp"],
            &["--tenant", "--phone-number-id", "--access-token"],
        ),
        (
            &["channel", "add", "sms"],
            &["--phone-number", "--account-sid", "--auth-token"],
        ),
        (&["channel", "add", "email"], &["--address"]),
        (
            &["chat"],
            &["--tenant", "--agent", "--contact", "KIND: text", "stderr"],
        ),
        (&["kb"], &["ingest", "search", "reindex", "check"]),
        (
            &["kb", "ingest"],
            &["--tenant", "--global", "DIR", "not changed"],
        ),
        (&["kb", "search"], &["--tenant", "--limit", "--text"]),
        (&["prompts"], &["check"]),
        (
            &["prompts", "check"],
            &["file:line: message", "WASIT_PROMPTS_DIR"],
        ),
    ];
    for (args, expected) in cases {
        let mut full = args.to_vec();
        full.push("--help");
        let (code, stdout, _) = run(&mut wasit(&full));
        assert_eq!(code, 0, "wasit {} --help", args.join(" "));
        assert!(
            stdout.contains("Usage:"),
            "wasit {} --help: {stdout}",
            args.join(" ")
        );
        for word in *expected {
            assert!(
                stdout.contains(word),
                "wasit {} --help lacks {word}: {stdout}",
                args.join(" ")
            );
        }
    }
}

/// Bad usage exits 2 and says what was wrong.
#[test]
fn bad_usage_exits_2_with_a_useful_message() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "Usage"),
        (&["frobnicate"], "unrecognized subcommand"),
        (&["tenant", "create", "--name", "x"], "--slug"),
        (
            &["tenant", "create", "--slug", "Bad_Slug", "--name", "x"],
            "lowercase letters",
        ),
        (
            &[
                "user", "create", "--tenant", "acme", "--email", "nope", "--role", "admin",
            ],
            "invalid email",
        ),
        (
            &["token", "--tenant", "acme", "--role", "king"],
            "possible values",
        ),
        (
            &[
                "token",
                "--tenant",
                "acme",
                "--role",
                "admin",
                "--ttl-minutes",
                "0",
            ],
            "ttl-minutes",
        ),
        (
            &[
                "channel",
                "add",
                "whatsapp",
                "--tenant",
                "acme",
                "--phone-number-id",
                "abc",
                "--access-token",
                "t",
            ],
            "digits only",
        ),
        (
            &[
                "channel",
                "add",
                "sms",
                "--tenant",
                "acme",
                "--phone-number",
                "0555",
                "--account-sid",
                "AC1",
                "--auth-token",
                "t",
            ],
            "E.164",
        ),
    ];
    for (args, expected) in cases {
        let (code, _, stderr) = run(&mut wasit(args));
        assert_eq!(code, 2, "wasit {}: {stderr}", args.join(" "));
        assert!(
            stderr.contains(expected),
            "wasit {}: expected {expected:?} in {stderr}",
            args.join(" ")
        );
    }
}

/// A malformed environment variable is a usage error naming the variable.
#[test]
fn malformed_environment_exits_2_naming_the_variable() {
    let (code, _, stderr) = run(wasit(&["migrate"]).env("WASIT_HTTP_ADDR", "localhost"));
    assert_eq!(code, 2);
    assert!(stderr.contains("WASIT_HTTP_ADDR"), "{stderr}");
}

/// tenant create, user create, token and channel add against a real database, including their
/// failures: a duplicate slug, an unknown tenant, an address bound to another tenant.
#[tokio::test]
async fn operator_commands_work_against_a_real_database() {
    let t = TestDb::new().await;
    let url = t.url.clone();
    let cmd = move |args: &[&str]| {
        let mut c = wasit(args);
        c.env("DATABASE_URL", &url)
            .env("WASIT_JWT_SECRET", JWT_SECRET);
        run(&mut c)
    };

    let (code, stdout, stderr) = cmd(&[
        "tenant",
        "create",
        "--slug",
        "riyadh-gold",
        "--name",
        "ذهب الرياض",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let tenant_id: runtime::TenantId = stdout.trim().parse().expect("prints the tenant id");

    let (code, _, stderr) = cmd(&[
        "tenant",
        "create",
        "--slug",
        "riyadh-gold",
        "--name",
        "again",
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("already exists"), "{stderr}");

    let (code, stdout, stderr) = cmd(&[
        "user",
        "create",
        "--tenant",
        "riyadh-gold",
        "--email",
        "Rep@Riyadh.Gold",
        "--role",
        "sales_rep",
        "--password",
        "correct horse",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let user_id = stdout.trim().to_owned();

    let (code, _, stderr) = cmd(&[
        "user", "create", "--tenant", "nowhere", "--email", "a@b.io", "--role", "admin",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("wasit tenant create"), "{stderr}");

    // A token for the user verifies with the configured secret and names tenant, role and user.
    let (code, stdout, stderr) = cmd(&[
        "token",
        "--tenant",
        "riyadh-gold",
        "--role",
        "sales_rep",
        "--user",
        "rep@riyadh.gold",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let claims = JwtKeys::new(&SecretString::from(JWT_SECRET))
        .verify(stdout.trim())
        .unwrap();
    assert_eq!(claims.tid, tenant_id);
    assert_eq!(claims.sub, user_id);
    assert_eq!(claims.role, api::auth::Role::SalesRep);

    let (code, _, stderr) = cmd(&[
        "token",
        "--tenant",
        "riyadh-gold",
        "--role",
        "admin",
        "--user",
        "ghost@x.io",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no user"), "{stderr}");

    let (code, stdout, stderr) = cmd(&[
        "channel",
        "add",
        "whatsapp",
        "--tenant",
        "riyadh-gold",
        "--phone-number-id",
        "106540352242922",
        "--access-token",
        "EAAG-test",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.trim().parse::<uuid::Uuid>().is_ok());
    assert_eq!(
        runtime::db::tenant_id_by_channel(&t.db().app, "whatsapp", "106540352242922")
            .await
            .unwrap(),
        Some(tenant_id)
    );

    cmd(&["tenant", "create", "--slug", "jeddah", "--name", "Jeddah"]);
    let (code, _, stderr) = cmd(&[
        "channel",
        "add",
        "whatsapp",
        "--tenant",
        "jeddah",
        "--phone-number-id",
        "106540352242922",
        "--access-token",
        "EAAG-other",
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("already bound"), "{stderr}");

    let (code, _, stderr) = cmd(&[
        "channel",
        "add",
        "sms",
        "--tenant",
        "jeddah",
        "--phone-number",
        "+15005550006",
        "--account-sid",
        "AC123",
        "--auth-token",
        "secret",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = cmd(&[
        "channel",
        "add",
        "email",
        "--tenant",
        "jeddah",
        "--address",
        "Sales@Jeddah.example",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        runtime::db::tenant_id_by_channel(&t.db().app, "email", "sales@jeddah.example")
            .await
            .unwrap()
            .is_some()
    );
}

/// `wasit prompts check`: the shipped prompts pass (exit 0); a directory with mistakes gets one
/// `file:line: message` line per problem on stdout and exit 1; no database is needed.
#[test]
fn prompts_check_reports_every_problem_with_file_and_line() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../prompts");
    let (code, stdout, stderr) = run(&mut wasit(&["prompts", "check", shipped]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("no problems"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("knowledge.md"),
        "+++\nagent = \"knowledge\"\ndescription = \"d\"\ntools = [\"book_meeting\"]\n+++\n{{ tenant.nmae }}\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("tenants/riyadh-gold")).unwrap();
    std::fs::write(
        dir.path().join("tenants/riyadh-gold/sales.md"),
        "+++\nagent = \"sales\"\ndescription = \"d\"\n+++\n{% if %}\n",
    )
    .unwrap();
    let (code, stdout, stderr) = run(&mut wasit(&[
        "prompts",
        "check",
        dir.path().to_str().unwrap(),
    ]));
    assert_eq!(code, 1, "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines[0].ends_with("knowledge.md:4: the knowledge agent may not call \"book_meeting\"; it may call search_knowledge, handoff"), "{stdout}");
    assert!(
        lines[1].contains("knowledge.md:6: unknown variable tenant.nmae"),
        "{stdout}"
    );
    assert!(
        lines[2].contains("tenants/riyadh-gold/sales.md:5: template:"),
        "{stdout}"
    );
    assert!(
        stderr.contains("3 problems in the 2 prompt files"),
        "{stderr}"
    );
}
