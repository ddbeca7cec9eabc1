//! The starter knowledge base in `knowledge-base/articles/`: every file parses, the body is in
//! the language its front matter says, and it chunks within the default budget.

use std::collections::BTreeSet;
use std::path::Path;

use knowledge_base::article::Article;
use knowledge_base::chunk::{ChunkOptions, chunk};
use knowledge_base::normalize::{Language, detect};
use runtime::llm::tokens::TiktokenCounter;

#[test]
fn the_starter_articles_are_valid_bilingual_and_chunk_within_budget() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("articles");
    let mut articles = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("knowledge-base/articles exists") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            articles.push(Article::load(&path).unwrap_or_else(|e| panic!("{e}")));
        }
    }
    assert!(articles.len() >= 30, "{} articles", articles.len());
    let count = |lang: &str| articles.iter().filter(|a| a.meta.language == lang).count();
    assert!(
        count("ar") >= 15 && count("en") >= 15,
        "ar {} en {}",
        count("ar"),
        count("en")
    );

    let titles: BTreeSet<&str> = articles.iter().map(|a| a.meta.title.as_str()).collect();
    assert_eq!(titles.len(), articles.len(), "titles are unique");

    let counter = TiktokenCounter::for_model("gpt-4o-mini");
    let options = ChunkOptions::default();
    for a in &articles {
        let detected = detect(&a.body);
        let expected = match a.meta.language.as_str() {
            "ar" => Language::Arabic,
            _ => Language::English,
        };
        assert_eq!(detected, expected, "{}: body language", a.path.display());
        let chunks = chunk(&a.body, counter.as_ref(), options);
        assert!(!chunks.is_empty(), "{}", a.path.display());
        assert!(
            chunks.iter().all(|c| c.tokens <= options.max_tokens),
            "{}",
            a.path.display()
        );
        assert!(
            chunks.iter().all(|c| !c.heading_path.is_empty()),
            "{}: every chunk sits under the article's heading",
            a.path.display()
        );
    }
}
