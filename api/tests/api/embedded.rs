//! The embedded PostgreSQL cluster: created by the first `wasit migrate` without `DATABASE_URL`,
//! reused by the next, and started and stopped cleanly by `wasit serve`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn wasit(data_dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasit"));
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .env_remove("RUST_LOG")
        .env("WASIT_DATA_DIR", data_dir);
    cmd
}

fn system_identifier(pgdata: &Path) -> Vec<u8> {
    // pg_control starts with the cluster's system identifier: new cluster, new identifier.
    std::fs::read(pgdata.join("global/pg_control")).unwrap()[..8].to_vec()
}

/// `wasit migrate` without DATABASE_URL creates the cluster and migrates it; a second run reuses
/// the same cluster and applies nothing; each run stops the server it started.
#[test]
fn migrate_creates_the_embedded_cluster_once_and_reuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let pgdata = dir.path().join("postgres");

    let first = wasit(dir.path(), &["migrate"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&first.stderr);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(first.status.success(), "first migrate failed: {stderr}");
    assert!(stderr.contains("embedded PostgreSQL created"), "{stderr}");
    let total = runtime::db::MIGRATOR.iter().count();
    assert!(stdout.contains(&format!("{total} applied now")), "{stdout}");
    assert!(pgdata.join("PG_VERSION").is_file());
    assert!(
        !pgdata.join("postmaster.pid").exists(),
        "the server must be stopped after migrate"
    );
    let identity = system_identifier(&pgdata);

    let second = wasit(dir.path(), &["migrate"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(second.status.success(), "second migrate failed: {stderr}");
    assert!(stderr.contains("embedded PostgreSQL reused"), "{stderr}");
    assert!(stdout.contains("0 applied now"), "{stdout}");
    assert_eq!(
        system_identifier(&pgdata),
        identity,
        "the cluster was recreated"
    );
    assert!(!pgdata.join("postmaster.pid").exists());
}

/// `wasit serve` on the embedded cluster answers /healthz and /readyz; other commands may share
/// the running cluster without stopping it; the application logs in as `wasit_app` itself; and on
/// SIGTERM `serve` drains, stops the cluster and exits 0.
#[tokio::test]
async fn serve_runs_on_the_embedded_cluster_and_shuts_down_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let pgdata = dir.path().join("postgres");
    let mut child = wasit(dir.path(), &["serve"])
        .env("WASIT_HTTP_ADDR", "127.0.0.1:0")
        .env(
            "WASIT_PROMPTS_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../prompts"),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    });
    let line = tokio::time::timeout(Duration::from_secs(60), line)
        .await
        .expect("serve started")
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("wasit listening on ")
        .expect("prints its address")
        .to_owned();

    runtime::http::install_tls_provider();
    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(
        pgdata.join("postmaster.pid").exists(),
        "the cluster runs while serving"
    );

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap());
    let status = tokio::time::timeout(Duration::from_secs(60), status)
        .await
        .expect("serve exited")
        .unwrap();
    assert!(status.success(), "serve exited with {status}");
    assert!(
        !pgdata.join("postmaster.pid").exists(),
        "the cluster is stopped on shutdown"
    );
}
