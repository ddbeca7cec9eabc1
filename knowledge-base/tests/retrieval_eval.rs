//! Retrieval evaluation: the 60 questions of `knowledge-base/eval/questions.toml` (half Arabic,
//! formal and Gulf dialect; half English) against the starter articles, BM25 alone. Reports
//! recall@5 (a question counts when one of its expected articles is among the first five
//! distinct articles) and MRR (the reciprocal rank of the first expected article), and fails
//! below recall@5 = 0.9.

use std::path::Path;

use knowledge_base::article::Article;
use knowledge_base::bm25::MemoryIndex;
use knowledge_base::chunk::{ChunkOptions, chunk};
use runtime::llm::tokens::TiktokenCounter;
use serde::Deserialize;

#[derive(Deserialize)]
struct Questions {
    question: Vec<Question>,
}

#[derive(Deserialize)]
struct Question {
    text: String,
    expected: Vec<String>,
}

#[test]
fn bm25_alone_finds_the_right_articles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let counter = TiktokenCounter::for_model("gpt-4o-mini");
    let mut stems = Vec::new(); // per chunk: its article's file stem
    let mut texts = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(root.join("articles"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    entries.sort();
    for path in entries {
        let article = Article::load(&path).unwrap();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        for c in chunk(&article.body, counter.as_ref(), ChunkOptions::default()) {
            texts.push(format!("{}\n{}", article.meta.title, c.indexed_text()));
            stems.push(stem.clone());
        }
    }
    let index = MemoryIndex::new(texts.iter().map(String::as_str));
    let questions: Questions =
        toml::from_str(&std::fs::read_to_string(root.join("eval/questions.toml")).unwrap())
            .unwrap();
    assert!(questions.question.len() >= 60);

    let (mut hits, mut reciprocal, mut misses) = (0usize, 0f64, Vec::new());
    for q in &questions.question {
        for e in &q.expected {
            assert!(
                stems.contains(e),
                "{:?} expects unknown article {e}",
                q.text
            );
        }
        let mut ranked: Vec<&str> = Vec::new();
        for (i, _) in index.search(&q.text, 50) {
            if !ranked.contains(&stems[i].as_str()) {
                ranked.push(&stems[i]);
            }
        }
        let first = ranked
            .iter()
            .position(|s| q.expected.iter().any(|e| e == s));
        if first.is_some_and(|r| r < 5) {
            hits += 1;
        } else {
            misses.push(format!("{} → {:?}", q.text, &ranked[..ranked.len().min(5)]));
        }
        reciprocal += first.map_or(0.0, |r| 1.0 / (r as f64 + 1.0));
    }
    let n = questions.question.len() as f64;
    let recall = hits as f64 / n;
    let mrr = reciprocal / n;
    println!(
        "retrieval (BM25 alone, {} chunks): recall@5 {recall:.3}, MRR {mrr:.3}",
        texts.len()
    );
    for m in &misses {
        println!("  missed: {m}");
    }
    assert!(
        recall >= 0.9,
        "recall@5 {recall:.3} is below 0.9; misses: {misses:#?}"
    );
}
