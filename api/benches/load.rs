//! Load tool: signed WhatsApp notifications against a running `wasit serve`, with the LLM and the
//! Graph API stood in by local servers that answer instantly. Reports webhook acknowledgement
//! latency, completed turns per second, memory per live conversation actor, and reactivation
//! latency. Not a pass/fail test: the figures go to docs/BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p api --bench load -- [--rate 500] [--seconds 60] [--contacts 20000] [--actors 2000]
//!                                     [--db embedded|server]
//! ```
//!
//! `--db embedded` (the default) runs the server on its embedded PostgreSQL cluster in a fresh data
//! dir, as `wasit serve` runs by default. `--db server` uses a database of its own on the test
//! server (`WASIT_TEST_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`).
//! Either is removed at the end unless `WASIT_BENCH_KEEP_DB=1` (to look at plans and sizes).
//! Every request goes to 127.0.0.1; every loop is bounded in count and time.

use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::testkit::graph::FakeGraph;
use api::testkit::llm::{FakeLlm, Reply};
use serde_json::json;
use sqlx::Connection;

const APP_SECRET: &str = "bench-app-secret";
const PNID: &str = "100000000000001";

struct Options {
    rate: u64,
    seconds: u64,
    contacts: u64,
    actors: u64,
    /// `embedded` (the default deployment: wasit's own cluster under a fresh data dir) or
    /// `server` (a database on the test server, `WASIT_TEST_DATABASE_URL`).
    db: String,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    Options {
        rate: get("--rate", 500),
        seconds: get("--seconds", 60),
        contacts: get("--contacts", 20_000),
        actors: get("--actors", 2_000),
        db: args
            .iter()
            .position(|a| a == "--db")
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| "embedded".to_owned()),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn notification(id: &str, from: &str, text: &str) -> Vec<u8> {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550000001", "phone_number_id": PNID},
        "contacts": [{"profile": {"name": "عميل"}, "wa_id": from}],
        "messages": [{"from": from, "id": id, "timestamp": "1749416383", "type": "text", "text": {"body": text}}]}}]}]})
    .to_string()
    .into_bytes()
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    /// A notification to the webhook, signed as Meta signs it.
    fn post(&self, client: &reqwest::Client, body: Vec<u8>) -> reqwest::RequestBuilder {
        let sig = channels::whatsapp::sign(APP_SECRET.as_bytes(), &body);
        client
            .post(format!("{}/webhooks/whatsapp", self.base))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", sig)
            .body(body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Where the server keeps its data.
enum Db {
    /// wasit's embedded cluster in this data dir.
    Embedded(tempfile::TempDir),
    /// A database of its own on the test server.
    Server {
        admin_url: String,
        name: String,
        url: String,
    },
}

impl Db {
    async fn create(kind: &str) -> Self {
        if kind == "embedded" {
            return Db::Embedded(tempfile::tempdir().expect("a temporary data dir"));
        }
        assert_eq!(kind, "server", "--db is embedded or server");
        let admin_url = std::env::var("WASIT_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("wasit_bench_{}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("the test PostgreSQL server");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let mut url = url::Url::parse(&admin_url).unwrap();
        url.set_path(&name);
        Db::Server {
            admin_url,
            name,
            url: url.to_string(),
        }
    }

    fn configure(&self, cmd: &mut Command) {
        match self {
            Db::Embedded(dir) => cmd.env("WASIT_DATA_DIR", dir.path()),
            Db::Server { url, .. } => cmd.env("DATABASE_URL", url),
        };
    }

    async fn remove(self) {
        let keep = std::env::var_os("WASIT_BENCH_KEEP_DB").is_some();
        match self {
            Db::Embedded(dir) if keep => {
                println!("\nkept the data dir: {}", dir.keep().display());
            }
            Db::Embedded(dir) => drop(dir),
            Db::Server { url, .. } if keep => println!("\nkept the database: {url}"),
            Db::Server {
                admin_url, name, ..
            } => {
                let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await;
            }
        }
    }
}

fn wasit(db: &Db, extra: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasit"));
    db.configure(&mut cmd);
    cmd.env(
        "WASIT_PROMPTS_DIR",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../prompts"),
    )
    .env("WASIT_JWT_SECRET", "bench-secret-that-is-at-least-32-bytes")
    .env("WHATSAPP_APP_SECRET", APP_SECRET)
    .env("WHATSAPP_VERIFY_TOKEN", "bench")
    .env("RUST_LOG", "warn");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd
}

fn start_server(db: &Db, extra: &[(&str, String)]) -> Server {
    let (child, base) = api::testkit::spawn_serve(&mut wasit(db, extra));
    Server { child, base }
}

async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    runtime::http::install_tls_provider();
    let o = options();
    let db = Db::create(&o.db).await;

    let llm = FakeLlm::start().await;
    llm.stop_recording();
    llm.respond_with(|_| Reply::Text("أهلاً بك! كيف أساعدك؟".into()));
    let graph = FakeGraph::start().await;

    for args in [
        vec!["tenant", "create", "--slug", "bench", "--name", "Bench"],
        vec![
            "channel",
            "add",
            "whatsapp",
            "--tenant",
            "bench",
            "--phone-number-id",
            PNID,
            "--access-token",
            "bench-token",
        ],
    ] {
        let out = wasit(&db, &[]).args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let env = |debounce: &str, idle: &str| {
        vec![
            ("WASIT_HTTP_ADDR", "127.0.0.1:0".to_owned()),
            ("LLM_BASE_URL", llm.url()),
            ("WHATSAPP_GRAPH_URL", graph.url()),
            ("WASIT_DEBOUNCE_MS", debounce.to_owned()),
            ("WASIT_IDLE_SECS", idle.to_owned()),
            // An upgraded business number: WhatsApp's 1,000 messages/s tier.
            ("WASIT_WHATSAPP_RATE", "1000".to_owned()),
        ]
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let machine = format!(
        "{} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(
                |c| c.lines().find(|l| l.starts_with("model name")).map(|l| l
                    .split(':')
                    .nth(1)
                    .unwrap_or("")
                    .trim()
                    .to_owned())
            )
            .unwrap_or_default()
    );
    println!("machine: {machine}; database: {}", o.db);

    // Phase 1: sustained load. Each notification is a new message from one of `contacts` contacts.
    {
        let server = start_server(&db, &env("50", "600"));
        let post = |body: Vec<u8>| server.post(&client, body);
        let total = o.rate * o.seconds;
        let interval = Duration::from_secs_f64(1.0 / o.rate as f64);
        let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(total as usize)));
        let errors = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<
            String,
            u64,
        >::new()));
        let mut tasks = tokio::task::JoinSet::new();
        let started = Instant::now();
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for i in 0..total {
            ticker.tick().await;
            let contact = 966_500_000_000u64 + (i % o.contacts);
            let request = post(notification(
                &format!("wamid.bench.{i}"),
                &contact.to_string(),
                "كم سعر الذهب اليوم؟",
            ));
            let (latencies, errors) = (latencies.clone(), errors.clone());
            tasks.spawn(async move {
                let sent = Instant::now();
                let failure = match request.send().await {
                    Ok(r) if r.status() == 200 => {
                        latencies
                            .lock()
                            .unwrap()
                            .push((sent - started, sent.elapsed()));
                        return;
                    }
                    Ok(r) => format!("HTTP {}", r.status().as_u16()),
                    Err(e) if e.is_timeout() => "timeout".to_owned(),
                    Err(e) if e.is_connect() => "connect".to_owned(),
                    Err(_) => "other".to_owned(),
                };
                *errors.lock().unwrap().entry(failure).or_default() += 1;
            });
        }
        while tasks.join_next().await.is_some() {}
        let sending = started.elapsed();
        // Only acknowledged notifications were stored; a refused one (503 under overload) is the
        // provider's to retry, as Meta does.
        let turns_expected = latencies.lock().unwrap().len();
        let _ = wait_until("every reply", Duration::from_secs(600), || {
            graph.delivered_count() >= turns_expected
        })
        .await;
        let all_done = started.elapsed();
        let timed = latencies.lock().unwrap().clone();
        let mut l: Vec<Duration> = timed.iter().map(|(_, d)| *d).collect();
        l.sort();
        println!(
            "\n== sustained load: {total} notifications at {} /s target, {} contacts, debounce 50 ms",
            o.rate, o.contacts
        );
        println!(
            "sent in {:.1} s = {:.0} notifications/s offered; acknowledged {turns_expected}; refused {:?}",
            sending.as_secs_f64(),
            total as f64 / sending.as_secs_f64(),
            errors.lock().unwrap()
        );
        println!(
            "ack latency: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            percentile(&l, 0.50).as_secs_f64() * 1e3,
            percentile(&l, 0.95).as_secs_f64() * 1e3,
            percentile(&l, 0.99).as_secs_f64() * 1e3,
            l.last().copied().unwrap_or_default().as_secs_f64() * 1e3
        );
        // Latency over time: where in the run the tail comes from.
        let mut windows: std::collections::BTreeMap<u64, Vec<Duration>> = Default::default();
        for (at, d) in &timed {
            windows.entry(at.as_secs() / 10 * 10).or_default().push(*d);
        }
        for (from, mut w) in windows {
            w.sort();
            println!(
                "  sent at {from:>3}-{:<3} s: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                from + 10,
                percentile(&w, 0.50).as_secs_f64() * 1e3,
                percentile(&w, 0.99).as_secs_f64() * 1e3,
                w.last().copied().unwrap_or_default().as_secs_f64() * 1e3
            );
        }
        println!(
            "turns: {} replies delivered in {:.1} s = {:.0} completed turns/s (LLM calls: {})",
            graph.delivered_count(),
            all_done.as_secs_f64(),
            graph.delivered_count() as f64 / all_done.as_secs_f64(),
            llm.answered()
        );
        println!(
            "server RSS after the run: {} MiB",
            rss_kib(server.child.id()) / 1024
        );
    }

    // Phase 2: memory per live actor, and reactivation after passivation.
    {
        let server = start_server(&db, &env("0", "3"));
        let pid = server.child.id();
        let post = |body: Vec<u8>| server.post(&client, body);
        // Warm up allocator and pools with one conversation, then measure.
        let before_delivered = graph.delivered_count();
        post(notification("wamid.mem.warm", "977000000000", "warm"))
            .send()
            .await
            .unwrap();
        wait_until("warm-up", Duration::from_secs(30), || {
            graph.delivered_count() > before_delivered
        })
        .await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        let base_rss = rss_kib(pid);
        let before = graph.delivered_count();
        let mut sends = tokio::task::JoinSet::new();
        for i in 0..o.actors {
            let req = post(notification(
                &format!("wamid.mem.{i}"),
                &(978_000_000_000u64 + i).to_string(),
                "مرحبا",
            ));
            sends.spawn(async move { req.send().await.map(|r| r.status().as_u16()) });
            if sends.len() >= 64 {
                sends.join_next().await;
            }
        }
        while sends.join_next().await.is_some() {}
        wait_until("replies", Duration::from_secs(120), || {
            graph.delivered_count() >= before + o.actors as usize
        })
        .await;
        let live_rss = rss_kib(pid);
        println!("\n== memory: {} live conversation actors", o.actors);
        println!(
            "RSS {} KiB -> {} KiB: {:.1} KiB per live conversation (actor, mailbox, supervisor entry, allocator slack)",
            base_rss,
            live_rss,
            (live_rss.saturating_sub(base_rss)) as f64 / o.actors as f64
        );
        // Let them passivate (idle 3 s), then reactivate each with a second message.
        tokio::time::sleep(Duration::from_secs(8)).await;
        println!(
            "RSS after passivation: {} KiB (allocators keep freed pages; the actors are gone)",
            rss_kib(pid)
        );
        // Each contact: a message to its passivated conversation (reactivation), then at once a
        // second one to the now-live actor. The difference is what reactivation costs.
        let (mut passivated, mut live) = (Vec::new(), Vec::new());
        for i in 0..200u64.min(o.actors) {
            let contact = (978_000_000_000u64 + i).to_string();
            for (round, samples) in [(0, &mut passivated), (1, &mut live)] {
                if round == 1 {
                    // Past the per-recipient pacing gap (500 ms), still well inside the idle time.
                    tokio::time::sleep(Duration::from_millis(600)).await;
                }
                let before = graph.delivered_count();
                let t = Instant::now();
                post(notification(
                    &format!("wamid.re.{i}.{round}"),
                    &contact,
                    "عدت",
                ))
                .send()
                .await
                .unwrap();
                wait_until("reply", Duration::from_secs(30), || {
                    graph.delivered_count() > before
                })
                .await;
                samples.push(t.elapsed());
            }
        }
        passivated.sort();
        live.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "\n== reactivation: webhook -> turn -> reply at Graph, debounce 0, sequential, {} contacts",
            passivated.len()
        );
        println!(
            "to a passivated conversation: p50 {:.1} ms, p99 {:.1} ms",
            ms(percentile(&passivated, 0.5)),
            ms(percentile(&passivated, 0.99))
        );
        println!(
            "to a live conversation:       p50 {:.1} ms, p99 {:.1} ms",
            ms(percentile(&live, 0.5)),
            ms(percentile(&live, 0.99))
        );
        println!(
            "reactivation cost (difference): p50 {:.1} ms, p99 {:.1} ms",
            ms(percentile(&passivated, 0.5)) - ms(percentile(&live, 0.5)),
            ms(percentile(&passivated, 0.99)) - ms(percentile(&live, 0.99))
        );
    }

    db.remove().await;
}
