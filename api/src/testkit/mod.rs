//! Local stand-ins for third-party SaaS, speaking their documented wire formats, for tests and
//! load tools: a Meta Graph API ([`graph::FakeGraph`]) and an OpenAI-compatible chat-completions
//! server ([`llm::FakeLlm`]). Each listens on a loopback port chosen by the OS (port 0).
//!
//! Only third-party services are faked: PostgreSQL, Redis and HTTP are real in every test.

pub mod graph;
pub mod llm;

use std::net::SocketAddr;

/// Spawns `wasit serve` as configured by `cmd` (stdout piped) and waits for its
/// `wasit listening on <base>` line; returns the child and the base URL.
pub fn spawn_serve(cmd: &mut std::process::Command) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = cmd
        .arg("serve")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("wasit serve starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("serve writes its address");
    let base = line
        .trim()
        .strip_prefix("wasit listening on ")
        .unwrap_or_else(|| panic!("serve printed {line:?} instead of its address"))
        .to_owned();
    (child, base)
}

/// Serves `router` on 127.0.0.1 with an OS-chosen port, in the background.
async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("a bound address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}
