//! Retrieval at scale on the embedded index: N chunks (default 100,000) over 100 tenants and the
//! global pseudo-tenant, each with its BM25 vector and a dense vector; then top-8 hybrid searches
//! (BM25 + dense, reciprocal-rank fusion) filtered to one tenant and the global articles, one at
//! a time. Reports the ingest rate (chunks/s, with a flush per batch as `sync` does), optimise
//! time, peak memory, and search latency percentiles, hybrid and BM25 alone. Not a pass/fail
//! test: the figures go to docs/BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p knowledge-base --bench retrieval -- [--chunks 100000] [--dims 384] [--queries 2000] [--global-share 0.05]
//! ```
//!
//! The texts are made from the starter articles' own terms (Arabic and English, Zipf-like
//! frequencies), so posting lists have realistic shapes; dense vectors are random unit vectors
//! (an embedder's values do not change the index's work).

use std::path::Path;
use std::time::{Duration, Instant};

use knowledge_base::article::Article;
use knowledge_base::bm25;
use knowledge_base::index::edge::EdgeIndex;
use knowledge_base::index::{ChunkPayload, IndexPoint, IndexQuery, IndexSpec, VectorIndex};
use runtime::bench::{arg, peak_rss_mib};
use uuid::Uuid;

/// A small, seedable generator (xorshift64*): the same corpus on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Zipf-like: small indices far more often than large ones.
    fn zipf(&mut self, n: usize) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((n as f64).powf(u) - 1.0) as usize % n
    }

    fn unit_vector(&mut self, dims: usize) -> Vec<f32> {
        let v: Vec<f32> = (0..dims)
            .map(|_| (self.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
        v.into_iter().map(|x| x / norm).collect()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn main() {
    let chunks: usize = arg("--chunks", 100_000);
    let dims: usize = arg("--dims", 384);
    let queries: usize = arg("--queries", 2000);
    // The share of chunks that are global (the shared starter knowledge base); the rest spread
    // evenly over the tenants.
    let global_share: f64 = arg("--global-share", 0.05);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));

    // The vocabulary: every word of the starter articles, most frequent first.
    let mut counts = std::collections::HashMap::<String, usize>::new();
    let mut questions = Vec::new();
    for entry in std::fs::read_dir(root.join("articles")).unwrap() {
        let article = Article::load(&entry.unwrap().path()).unwrap();
        for word in article.body.split_whitespace() {
            let word = word.trim_matches(|c: char| !c.is_alphanumeric());
            if !word.is_empty() {
                *counts.entry(word.to_owned()).or_default() += 1;
            }
        }
    }
    let mut vocabulary: Vec<(String, usize)> = counts.into_iter().collect();
    vocabulary.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let vocabulary: Vec<String> = vocabulary.into_iter().map(|(w, _)| w).collect();
    let eval: toml::Value =
        toml::from_str(&std::fs::read_to_string(root.join("eval/questions.toml")).unwrap())
            .unwrap();
    for q in eval["question"].as_array().unwrap() {
        questions.push(q["text"].as_str().unwrap().to_owned());
    }

    let tenants: Vec<Uuid> = (0..100).map(|i| Uuid::from_u128(1000 + i)).collect();
    let global = knowledge_base::GLOBAL_TENANT.0;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let avg_len = 45.0;

    let dir = tempfile::tempdir().unwrap();
    let spec = IndexSpec {
        dense: Some(("bench".into(), dims)),
    };
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let index = EdgeIndex::open(dir.path(), &spec).unwrap();

    println!(
        "corpus: {chunks} chunks, {} tenants + global ({:.0} % of chunks), vocabulary {} words, dense {dims} dims",
        tenants.len(),
        global_share * 100.0,
        vocabulary.len()
    );
    let started = Instant::now();
    let batch = 1000;
    let mut made = 0;
    while made < chunks {
        let n = batch.min(chunks - made);
        let points: Vec<IndexPoint> = (0..n)
            .map(|i| {
                let words = 30 + rng.below(40);
                let text: Vec<&str> = (0..words)
                    .map(|_| vocabulary[rng.zipf(vocabulary.len())].as_str())
                    .collect();
                let text = text.join(" ");
                let tenant = if ((made + i) as f64 * global_share).fract() + global_share >= 1.0 {
                    global
                } else {
                    tenants[rng.below(tenants.len())]
                };
                IndexPoint {
                    id: Uuid::new_v4(),
                    sparse: bm25::document_vector(&text, avg_len).0,
                    dense: Some(rng.unit_vector(dims)),
                    payload: ChunkPayload {
                        tenant_id: tenant,
                        article_id: Uuid::from_u128(((made + i) / 4) as u128),
                        ordinal: ((made + i) % 4) as u32,
                        title: "مقال".into(),
                        heading_path: vec!["قسم".into()],
                        text,
                        language: "mixed".into(),
                    },
                }
            })
            .collect();
        tokio.block_on(async {
            index.upsert(points).await.unwrap();
            index.flush().await.unwrap();
        });
        made += n;
    }
    let ingest = started.elapsed();
    let rss_ingest = peak_rss_mib();
    let started = Instant::now();
    tokio.block_on(index.optimize()).unwrap();
    let optimise = started.elapsed();
    println!(
        "ingest: {:.1} s, {:.0} chunks/s (flush per {batch}); optimise {:.1} s; peak RSS {rss_ingest:.0} MiB after ingest, {:.0} MiB after optimise",
        ingest.as_secs_f64(),
        chunks as f64 / ingest.as_secs_f64(),
        optimise.as_secs_f64(),
        peak_rss_mib()
    );

    #[derive(Clone, Copy, PartialEq)]
    enum Mode {
        Hybrid,
        Sparse,
        Dense,
    }
    let mut run = |mode: Mode| {
        let mut times = Vec::with_capacity(queries);
        let mut results = 0usize;
        for q in 0..queries {
            let text = if q % 2 == 0 {
                questions[q / 2 % questions.len()].clone()
            } else {
                format!(
                    "{} {}",
                    vocabulary[rng.zipf(vocabulary.len())],
                    vocabulary[rng.below(vocabulary.len())]
                )
            };
            let query = IndexQuery {
                tenants: vec![tenants[rng.below(tenants.len())], global],
                sparse: if mode == Mode::Dense {
                    bm25::SparseVector::default()
                } else {
                    bm25::query_vector(&text)
                },
                dense: (mode != Mode::Sparse).then(|| rng.unit_vector(dims)),
                limit: 8,
            };
            let started = Instant::now();
            let hits = tokio.block_on(index.search(query)).unwrap();
            times.push(started.elapsed());
            results += hits.len();
        }
        times.sort();
        println!(
            "{}: {queries} queries, top-8, filtered to a tenant + global: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {:.1} results/query",
            match mode {
                Mode::Hybrid => "hybrid (BM25 + dense, RRF)",
                Mode::Sparse => "BM25 alone",
                Mode::Dense => "dense alone (an empty BM25 query)",
            },
            percentile(&times, 0.50),
            percentile(&times, 0.95),
            percentile(&times, 0.99),
            percentile(&times, 1.0),
            results as f64 / queries as f64,
        );
    };
    run(Mode::Hybrid);
    run(Mode::Sparse);
    run(Mode::Dense);
}
