//! The vector index behind one trait, with two backends: the embedded `qdrant-edge`
//! ([`edge::EdgeIndex`], the default, under the data dir) and a Qdrant server
//! ([`server::ServerIndex`], when `QDRANT_URL` is set).
//!
//! The index is derived data: PostgreSQL holds the articles and chunks, and anything the index
//! lacks is written to it again (see `crate::service`). Each point is one chunk, its id the
//! chunk's id, carrying a BM25 sparse vector (`bm25`, IDF applied by the index), optionally a dense
//! embedding (`dense`, cosine), and a payload with its tenant, article, title, heading path and
//! text. Every query is filtered to a set of tenants (the asking tenant and the global
//! pseudo-tenant); the filter is built here, once, for both backends.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::bm25::SparseVector;

pub mod edge;
pub mod server;

/// The sparse vector's name in both backends.
pub const SPARSE: &str = "bm25";
/// The dense vector's name in both backends.
pub const DENSE: &str = "dense";

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What went wrong in an index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The index is held by another process (the embedded one is single-process).
    #[error("{0}")]
    Busy(String),
    #[error("vector index: {0}")]
    Backend(String),
}

pub type Result<T, E = IndexError> = std::result::Result<T, E>;

/// The shape of the vectors an index holds: sparse always, dense when an embedder is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    /// The dense vectors' model and size.
    pub dense: Option<(String, usize)>,
}

impl IndexSpec {
    /// A short name for this shape, safe in a path or a collection name: `bm25`, or
    /// `hybrid-<model>-<dims>` (an index of another model's vectors is another index).
    pub fn signature(&self) -> String {
        match &self.dense {
            None => "bm25".to_owned(),
            Some((model, dims)) => {
                let model: String = model
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() {
                            c.to_ascii_lowercase()
                        } else {
                            '-'
                        }
                    })
                    .take(48)
                    .collect();
                format!("hybrid-{model}-{dims}")
            }
        }
    }
}

/// The payload stored with each point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkPayload {
    pub tenant_id: Uuid,
    pub article_id: Uuid,
    pub ordinal: u32,
    pub title: String,
    pub heading_path: Vec<String>,
    pub text: String,
    /// `ar`, `en`, `mixed` or `unknown`, detected on the chunk.
    pub language: String,
}

/// One chunk to index.
#[derive(Debug, Clone)]
pub struct IndexPoint {
    /// The chunk's id.
    pub id: Uuid,
    pub payload: ChunkPayload,
    pub sparse: SparseVector,
    pub dense: Option<Vec<f32>>,
}

/// A query: the tenants whose chunks may match, the vectors, and how many results.
#[derive(Debug, Clone)]
pub struct IndexQuery {
    pub tenants: Vec<Uuid>,
    pub sparse: SparseVector,
    pub dense: Option<Vec<f32>>,
    pub limit: usize,
}

impl IndexQuery {
    /// How many candidates each of the sparse and dense searches brings to the fusion.
    pub fn candidates(&self) -> usize {
        (self.limit * 4).max(20)
    }
}

/// A result, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexHit {
    pub chunk_id: Uuid,
    pub score: f32,
    pub payload: ChunkPayload,
}

/// A vector index. Writes are durable only after [`VectorIndex::flush`] returns; a backend may
/// lose unflushed writes in a crash, which the caller repairs from PostgreSQL.
pub trait VectorIndex: Send + Sync + fmt::Debug {
    /// A stable name for this index (its location), under which PostgreSQL keeps its generation.
    fn name(&self) -> &str;
    /// Whether opening it created it empty (so everything must be written to it).
    fn created(&self) -> bool;
    /// Writes points (replacing those with the same ids).
    fn upsert(&self, points: Vec<IndexPoint>) -> BoxFuture<'_, Result<()>>;
    /// Removes every point of these articles.
    fn delete_articles(&self, articles: Vec<Uuid>) -> BoxFuture<'_, Result<()>>;
    /// Removes every point.
    fn clear(&self) -> BoxFuture<'_, Result<()>>;
    /// Makes every write before it durable.
    fn flush(&self) -> BoxFuture<'_, Result<()>>;
    /// Builds search structures after a batch of writes (may take a while).
    fn optimize(&self) -> BoxFuture<'_, Result<()>>;
    /// The best points for a query, among the query's tenants only.
    fn search(&self, query: IndexQuery) -> BoxFuture<'_, Result<Vec<IndexHit>>>;
    /// Every point as (chunk id, article id, tenant id): for checks that the index agrees with
    /// PostgreSQL.
    fn points(&self) -> BoxFuture<'_, Result<Vec<(Uuid, Uuid, Uuid)>>>;
    /// The generation the index says it holds, if any (see [`VectorIndex::set_generation`]).
    fn generation(&self) -> BoxFuture<'_, Result<Option<Uuid>>>;
    /// Records durably which generation the index holds (`None`: it is being rebuilt and holds
    /// no complete generation). PostgreSQL's record of the generation counts only while the index
    /// says the same: an index emptied, replaced or rebuilt without PostgreSQL knowing is found
    /// out at the next open.
    fn set_generation(&self, generation: Option<Uuid>) -> BoxFuture<'_, Result<()>>;
}

fn payload_json(payload: &ChunkPayload) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(payload) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}

fn payload_from(map: serde_json::Map<String, serde_json::Value>) -> Result<ChunkPayload> {
    serde_json::from_value(serde_json::Value::Object(map))
        .map_err(|e| IndexError::Backend(format!("a point's payload is malformed: {e}")))
}
