//! Dense embeddings behind one trait. With an OpenAI-compatible endpoint and `EMBEDDING_MODEL`
//! set, [`OpenAiEmbedder`] calls its `/embeddings`; without one, retrieval is BM25 alone (the
//! embedded model has no embeddings).

use runtime::llm::Llm;

use crate::index::BoxFuture;

/// Turns texts into dense vectors of one fixed size.
pub trait Embedder: Send + Sync + std::fmt::Debug {
    /// The model's name (part of the index's identity: another model is another index).
    fn model(&self) -> &str;
    /// The size of its vectors.
    fn dims(&self) -> usize;
    /// One vector per text, in order.
    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, String>>;
}

/// Texts per `/embeddings` request.
pub const BATCH: usize = 64;

/// An OpenAI-compatible `/embeddings` endpoint, through the LLM layer (retries, timeouts, the
/// circuit breaker).
#[derive(Debug, Clone)]
pub struct OpenAiEmbedder {
    llm: Llm,
    model: String,
    dims: usize,
}

impl OpenAiEmbedder {
    /// Asks the endpoint for one embedding to learn the vectors' size.
    pub async fn connect(llm: Llm, model: &str) -> Result<Self, String> {
        let probe = llm
            .embed(model, &["وسيط".to_owned()])
            .await
            .map_err(|e| format!("the embedding model {model} does not answer: {e}"))?;
        let dims = probe.first().map_or(0, Vec::len);
        if dims == 0 {
            return Err(format!(
                "the embedding model {model} returned an empty vector"
            ));
        }
        Ok(Self {
            llm,
            model: model.to_owned(),
            dims,
        })
    }
}

impl Embedder for OpenAiEmbedder {
    fn model(&self) -> &str {
        &self.model
    }

    fn dims(&self) -> usize {
        self.dims
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, String>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(texts.len());
            for batch in texts.chunks(BATCH) {
                let vectors = self
                    .llm
                    .embed(&self.model, batch)
                    .await
                    .map_err(|e| e.to_string())?;
                if vectors.len() != batch.len() || vectors.iter().any(|v| v.len() != self.dims) {
                    return Err(format!(
                        "the embedding model {} answered {} vectors for {} texts, or vectors of another size than {}",
                        self.model,
                        vectors.len(),
                        batch.len(),
                        self.dims
                    ));
                }
                out.extend(vectors);
            }
            Ok(out)
        })
    }
}
