//! Load tool for the REST API: a tenant with `--leads` leads (default 100,000, created through
//! `POST /api/v1/leads`), then `--clients` concurrent clients (default 32) in closed loops for
//! `--seconds` each on `GET /api/v1/leads/{id}` (random ids) and on a filtered list of 50
//! (`GET /api/v1/leads?source=…&limit=50`). Reports requests per second and latency percentiles.
//! Runs `wasit serve` (release build) on its embedded cluster in a fresh data dir, with a user's
//! token (so every request also re-checks the user, as in production). Not a pass/fail test: the
//! figures go to docs/BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p api --bench rest -- [--leads 100000] [--clients 32] [--seconds 20]
//! ```

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const SOURCES: [&str; 7] = [
    "whatsapp", "sms", "email", "web", "referral", "import", "manual",
];

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn wasit(data_dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasit"));
    cmd.env_remove("DATABASE_URL")
        .env("WASIT_DATA_DIR", data_dir)
        .env(
            "WASIT_PROMPTS_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../prompts"),
        )
        .env("WASIT_JWT_SECRET", "bench-secret-that-is-at-least-32-bytes")
        .env("RUST_LOG", "warn");
    cmd
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("wasit runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `clients` closed loops of `request` for `seconds`; returns (requests/s, sorted latencies,
/// failures).
async fn closed_loop<F, Fut>(clients: u64, seconds: u64, request: F) -> (f64, Vec<Duration>, u64)
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let request = Arc::new(request);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let request = request.clone();
        tasks.spawn(async move {
            let (mut latencies, mut failures, mut i) = (Vec::new(), 0u64, c);
            while Instant::now() < deadline {
                let t = Instant::now();
                if request(i).await {
                    latencies.push(t.elapsed());
                } else {
                    failures += 1;
                }
                i = i
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
            }
            (latencies, failures)
        });
    }
    let (mut all, mut failures) = (Vec::new(), 0);
    while let Some(done) = tasks.join_next().await {
        let (l, f) = done.unwrap();
        all.extend(l);
        failures += f;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    (all.len() as f64 / elapsed, all, failures)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    runtime::http::install_tls_provider();
    let (leads, clients, seconds) = (
        runtime::bench::arg("--leads", 100_000u64),
        runtime::bench::arg("--clients", 32u64),
        runtime::bench::arg("--seconds", 20u64),
    );
    let dir = tempfile::tempdir().unwrap();
    run(wasit(dir.path()).args(["tenant", "create", "--slug", "bench", "--name", "Bench"]));
    run(wasit(dir.path()).args([
        "user",
        "create",
        "--tenant",
        "bench",
        "--email",
        "manager@bench.example",
        "--role",
        "sales_manager",
    ]));
    let token = run(wasit(dir.path()).args([
        "token",
        "--tenant",
        "bench",
        "--role",
        "sales_manager",
        "--user",
        "manager@bench.example",
    ]));
    let (mut server, base) =
        api::testkit::spawn_serve(wasit(dir.path()).env("WASIT_HTTP_ADDR", "127.0.0.1:0"));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    println!(
        "machine: {} cores; leads {leads}, clients {clients}, {seconds} s per scenario",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // Seed through the API, 32 at a time (this is also the write figure).
    let ids = Arc::new(std::sync::Mutex::new(Vec::with_capacity(leads as usize)));
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (client, base, token, ids, next) = (
            client.clone(),
            base.clone(),
            token.clone(),
            ids.clone(),
            next.clone(),
        );
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= leads {
                    return latencies;
                }
                let body = json!({"source": SOURCES[(i % 7) as usize], "score": (i % 101) as i16,
                                  "territory": if i % 2 == 0 { "الرياض" } else { "جدة" },
                                  "qualification": {"interest": "سبائك", "n": i}});
                let t = Instant::now();
                let r = client
                    .post(format!("{base}/api/v1/leads"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
                latencies.push(t.elapsed());
                let lead: Value = r.json().await.unwrap();
                ids.lock()
                    .unwrap()
                    .push(lead["id"].as_str().unwrap().to_owned());
            }
        });
    }
    let mut created = Vec::new();
    while let Some(l) = tasks.join_next().await {
        created.extend(l.unwrap());
    }
    created.sort();
    let seeding = started.elapsed().as_secs_f64();
    println!(
        "\n== POST /api/v1/leads (32 clients): {leads} in {seeding:.1} s = {:.0} req/s; p50 {:.1} ms, p99 {:.1} ms",
        leads as f64 / seeding,
        percentile(&created, 0.5),
        percentile(&created, 0.99)
    );
    let ids: Arc<Vec<String>> = Arc::new(ids.lock().unwrap().clone());

    let (c, b, t, i) = (client.clone(), base.clone(), token.clone(), ids.clone());
    let (rps, l, failures) = closed_loop(clients, seconds, move |n| {
        let (c, b, t) = (c.clone(), b.clone(), t.clone());
        let id = i[(n % i.len() as u64) as usize].clone();
        async move {
            let r = c
                .get(format!("{b}/api/v1/leads/{id}"))
                .bearer_auth(t)
                .send()
                .await;
            match r {
                Ok(r) if r.status() == 200 => r.bytes().await.is_ok(),
                _ => false,
            }
        }
    })
    .await;
    println!(
        "\n== GET /api/v1/leads/{{id}} ({clients} clients): {rps:.0} req/s; p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms; failures {failures}",
        percentile(&l, 0.5),
        percentile(&l, 0.95),
        percentile(&l, 0.99)
    );

    let (c, b, t) = (client.clone(), base.clone(), token.clone());
    let (rps, l, failures) = closed_loop(clients, seconds, move |n| {
        let (c, b, t) = (c.clone(), b.clone(), t.clone());
        let source = SOURCES[(n % 7) as usize];
        async move {
            let r = c
                .get(format!("{b}/api/v1/leads?source={source}&limit=50"))
                .bearer_auth(t)
                .send()
                .await;
            match r {
                Ok(r) if r.status() == 200 => r
                    .json::<Value>()
                    .await
                    .is_ok_and(|p| p["items"].as_array().is_some_and(|a| a.len() == 50)),
                _ => false,
            }
        }
    })
    .await;
    println!(
        "\n== GET /api/v1/leads?source=…&limit=50 ({clients} clients): {rps:.0} req/s; p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms; failures {failures}",
        percentile(&l, 0.5),
        percentile(&l, 0.95),
        percentile(&l, 0.99)
    );

    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();
}
