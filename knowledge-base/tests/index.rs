//! The vector index backends through their one trait: tenant isolation (both backends' code
//! paths; the Qdrant server's runs when `QDRANT_URL` is set), BM25 ranking on the embedded index
//! against the in-memory reference, hybrid fusion, durability across a reopen, and the
//! single-process lock.

use std::path::Path;
use std::sync::Arc;

use knowledge_base::article::Article;
use knowledge_base::bm25::{self, MemoryIndex};
use knowledge_base::chunk::{ChunkOptions, chunk};
use knowledge_base::index::edge::EdgeIndex;
use knowledge_base::index::server::ServerIndex;
use knowledge_base::index::{
    ChunkPayload, IndexError, IndexPoint, IndexQuery, IndexSpec, VectorIndex,
};
use runtime::llm::tokens::TiktokenCounter;
use uuid::Uuid;

fn point(tenant: Uuid, article: Uuid, text: &str, avg_len: f32) -> IndexPoint {
    IndexPoint {
        id: Uuid::new_v4(),
        payload: ChunkPayload {
            tenant_id: tenant,
            article_id: article,
            ordinal: 0,
            title: text.chars().take(20).collect(),
            heading_path: vec!["القسم".into()],
            text: text.to_owned(),
            language: "ar".into(),
        },
        sparse: bm25::document_vector(text, avg_len).0,
        dense: None,
    }
}

fn query(tenants: &[Uuid], text: &str, limit: usize) -> IndexQuery {
    IndexQuery {
        tenants: tenants.to_vec(),
        sparse: bm25::query_vector(text),
        dense: None,
        limit,
    }
}

/// Two tenants with the same words, and a global article: each tenant finds its own and the
/// global one, never the other's, whatever it asks; deleting an article removes only its points.
async fn tenants_never_see_each_other(index: &dyn VectorIndex) {
    let (a, b, global) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let (article_a, article_b, article_g) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let text = "ضمان الذهب لمدة سنة على السبائك والعملات";
    index
        .upsert(vec![
            point(a, article_a, text, 8.0),
            point(b, article_b, text, 8.0),
            point(b, article_b, "سعر الذهب اليوم في الرياض", 8.0),
            point(global, article_g, "الضمان الذهبي يشمل كل المنتجات", 8.0),
        ])
        .await
        .unwrap();
    index.flush().await.unwrap();
    for words in ["ضمان الذهب", "الذهب", "سعر الذهب اليوم", "الضمان"]
    {
        let hits = index.search(query(&[a, global], words, 10)).await.unwrap();
        assert!(!hits.is_empty(), "{words}: nothing found");
        for hit in &hits {
            assert!(
                hit.payload.tenant_id == a || hit.payload.tenant_id == global,
                "{words}: tenant A saw {:?}",
                hit.payload
            );
        }
        let hits_b = index.search(query(&[b], words, 10)).await.unwrap();
        assert!(hits_b.iter().all(|h| h.payload.tenant_id == b));
    }
    // No tenants, no results (never "all").
    assert!(
        index
            .search(query(&[], "الذهب", 10))
            .await
            .unwrap()
            .is_empty()
    );
    index.delete_articles(vec![article_b]).await.unwrap();
    index.flush().await.unwrap();
    assert!(
        index
            .search(query(&[b], "الذهب", 10))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        index.search(query(&[a], "الذهب", 10)).await.unwrap().len(),
        1
    );
    let points = index.points().await.unwrap();
    assert!(points.iter().all(|(_, article, _)| *article != article_b));
    assert!(
        points
            .iter()
            .any(|(_, article, tenant)| *article == article_g && *tenant == global)
    );
    // The generation record: none, then durable, then gone again.
    assert_eq!(index.generation().await.unwrap(), None);
    let g = Uuid::new_v4();
    index.set_generation(Some(g)).await.unwrap();
    assert_eq!(index.generation().await.unwrap(), Some(g));
    assert_eq!(
        index.points().await.unwrap().len(),
        points.len(),
        "the record is not a chunk"
    );
    index.set_generation(None).await.unwrap();
    assert_eq!(index.generation().await.unwrap(), None);
}

#[tokio::test]
async fn the_embedded_index_keeps_tenants_apart() {
    let dir = tempfile::tempdir().unwrap();
    let index = EdgeIndex::open(dir.path(), &IndexSpec { dense: None }).unwrap();
    assert!(index.created());
    tenants_never_see_each_other(&index).await;
}

/// Needs a Qdrant server, which CI does not have: reported skipped (ignored) unless run on purpose
/// — `scripts/test` runs it when `QDRANT_URL` is set — and never passes without running.
#[tokio::test]
#[ignore = "needs a Qdrant server: set QDRANT_URL=http://host:6334 (scripts/test then runs it)"]
async fn the_qdrant_server_index_keeps_tenants_apart() {
    let url = std::env::var("QDRANT_URL").expect(
        "QDRANT_URL is not set: this test needs a Qdrant server and cannot pass without one",
    );
    let spec = IndexSpec {
        dense: Some((format!("test-{}", Uuid::new_v4().simple()), 4)),
    };
    let index = ServerIndex::open(&url, &spec).await.unwrap();
    tenants_never_see_each_other(&index).await;
    index.clear().await.unwrap();
}

/// The starter articles in the embedded index (IDF applied by the index, the real average
/// length): the evaluation questions rank their articles as the in-memory reference does.
#[tokio::test]
async fn the_embedded_index_ranks_like_the_reference_bm25() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let counter = TiktokenCounter::for_model("gpt-4o-mini");
    let mut texts = Vec::new();
    let mut articles = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(root.join("articles"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for path in paths {
        let article = Article::load(&path).unwrap();
        let id = Uuid::new_v4();
        for c in chunk(&article.body, counter.as_ref(), ChunkOptions::default()) {
            texts.push(format!("{}\n{}", article.meta.title, c.indexed_text()));
            articles.push(id);
        }
    }
    let lengths: Vec<usize> = texts.iter().map(|t| bm25::index_terms(t).len()).collect();
    let avg_len = lengths.iter().sum::<usize>() as f32 / lengths.len() as f32;
    let tenant = Uuid::new_v4();
    let dir = tempfile::tempdir().unwrap();
    let index = EdgeIndex::open(dir.path(), &IndexSpec { dense: None }).unwrap();
    let points: Vec<IndexPoint> = texts
        .iter()
        .zip(&articles)
        .map(|(t, a)| point(tenant, *a, t, avg_len))
        .collect();
    let ids: Vec<Uuid> = points.iter().map(|p| p.id).collect();
    index.upsert(points).await.unwrap();
    index.flush().await.unwrap();
    index.optimize().await.unwrap();
    let reference = MemoryIndex::new(texts.iter().map(String::as_str));

    let questions: toml::Value =
        toml::from_str(&std::fs::read_to_string(root.join("eval/questions.toml")).unwrap())
            .unwrap();
    let mut same_first = 0;
    let questions = questions["question"].as_array().unwrap();
    for q in questions {
        let text = q["text"].as_str().unwrap();
        let expected: Vec<usize> = reference.search(text, 5).iter().map(|h| h.0).collect();
        let hits = index.search(query(&[tenant], text, 5)).await.unwrap();
        let got: Vec<usize> = hits
            .iter()
            .map(|h| ids.iter().position(|id| *id == h.chunk_id).unwrap())
            .collect();
        // Scores agree with the reference (same formula), so the order does too, up to ties.
        for (h, e) in hits.iter().zip(reference.search(text, 5)) {
            assert!(
                (h.score - e.1).abs() <= 1e-3 * e.1.max(1.0),
                "{text}: index score {} vs reference {}",
                h.score,
                e.1
            );
        }
        if got.first() == expected.first() {
            same_first += 1;
        }
    }
    println!(
        "embedded index vs reference: same first chunk for {same_first}/{} questions",
        questions.len()
    );
    assert!(same_first * 10 >= questions.len() * 9);
}

/// With dense vectors, BM25 and dense results are fused (reciprocal rank): a passage found only
/// by meaning still comes back, and the tenant filter holds in both searches.
#[tokio::test]
async fn hybrid_search_fuses_sparse_and_dense_results() {
    let dir = tempfile::tempdir().unwrap();
    let spec = IndexSpec {
        dense: Some(("test-embedder".into(), 4)),
    };
    let index = EdgeIndex::open(dir.path(), &spec).unwrap();
    let (tenant, other) = (Uuid::new_v4(), Uuid::new_v4());
    let mut by_words = point(tenant, Uuid::new_v4(), "رسوم التوصيل داخل الرياض", 4.0);
    by_words.dense = Some(vec![0.0, 1.0, 0.0, 0.0]);
    let mut by_meaning = point(tenant, Uuid::new_v4(), "الشحن مجاني للطلبات الكبيرة", 4.0);
    by_meaning.dense = Some(vec![1.0, 0.0, 0.0, 0.0]);
    let mut foreign = point(other, Uuid::new_v4(), "رسوم التوصيل داخل الرياض", 4.0);
    foreign.dense = Some(vec![1.0, 0.0, 0.0, 0.0]);
    let (words_id, meaning_id) = (by_words.id, by_meaning.id);
    index
        .upsert(vec![by_words, by_meaning, foreign])
        .await
        .unwrap();
    index.flush().await.unwrap();
    let hits = index
        .search(IndexQuery {
            tenants: vec![tenant],
            sparse: bm25::query_vector("كم رسوم التوصيل"),
            dense: Some(vec![0.9, 0.1, 0.0, 0.0]),
            limit: 5,
        })
        .await
        .unwrap();
    let ids: Vec<Uuid> = hits.iter().map(|h| h.chunk_id).collect();
    assert!(
        ids.contains(&words_id) && ids.contains(&meaning_id),
        "{hits:?}"
    );
    assert!(hits.iter().all(|h| h.payload.tenant_id == tenant));
}

/// Flushed points and the generation record are there after a reopen; a second opener of the same index is refused with
/// a message that says what to do.
#[tokio::test]
async fn flushed_points_survive_a_reopen_and_a_second_process_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spec = IndexSpec { dense: None };
    let (tenant, generation) = (Uuid::new_v4(), Uuid::new_v4());
    {
        let index = Arc::new(EdgeIndex::open(dir.path(), &spec).unwrap());
        index
            .upsert(vec![point(
                tenant,
                Uuid::new_v4(),
                "سبيكة ذهب عيار ٢٤",
                4.0,
            )])
            .await
            .unwrap();
        index.flush().await.unwrap();
        index.set_generation(Some(generation)).await.unwrap();
        match EdgeIndex::open(dir.path(), &spec) {
            Err(IndexError::Busy(message)) => assert!(message.contains("wasit serve"), "{message}"),
            other => panic!("a second open was not refused: {other:?}"),
        }
    }
    let index = EdgeIndex::open(dir.path(), &spec).unwrap();
    assert!(!index.created());
    assert_eq!(index.generation().await.unwrap(), Some(generation));
    let hits = index
        .search(query(&[tenant], "سبائك الذهب", 3))
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].payload.text, "سبيكة ذهب عيار ٢٤");
}
