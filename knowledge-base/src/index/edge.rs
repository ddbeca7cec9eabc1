//! The embedded index: a `qdrant-edge` shard on disk under the data dir, in this process.
//!
//! Facts about qdrant-edge 0.7.2 this is built around:
//! - writes are durable only after `flush()`; its WAL is not replayed after a crash (the caller
//!   re-writes from PostgreSQL whatever it had not flushed);
//! - `flush()` while an `update()` runs panics, and `optimize()` blocks and swaps segments: so
//!   every write, flush and optimisation goes through one writer thread (the index's writer
//!   actor), in order, while searches read the shard concurrently on the blocking pool;
//! - the shard is single-process: a lock file refuses a second process, with a message that says
//!   what to do.

use std::collections::HashMap;
use std::fs::{File, TryLockError};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use qdrant_edge::{
    Condition, Distance, EdgeConfig, EdgeShard, EdgeSparseVectorParams, EdgeVectorParams,
    FieldCondition, Filter, JsonPath, Match, Modifier, NamedQuery, PayloadFieldSchema,
    PayloadSchemaType, PointId, PointInsertOperations, PointOperations, PointStruct,
    QuantizationConfig, QueryEnum, QueryRequest, ScoredPoint, ScoringQuery, ScrollRequest,
    SearchParams, UpdateOperation, Vector, VectorInternal, Vectors, WithPayloadInterface,
    WithVector,
};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{
    BoxFuture, DENSE, IndexError, IndexHit, IndexPoint, IndexQuery, IndexSpec, Result, SPARSE,
    VectorIndex, payload_from, payload_json,
};

/// A write, in the order the writer receives them.
enum Op {
    Upsert(Vec<IndexPoint>),
    DeleteArticles(Vec<Uuid>),
    Clear,
    Flush,
    Optimize,
}

struct Job {
    op: Op,
    done: oneshot::Sender<Result<()>>,
}

/// The embedded `qdrant-edge` index.
pub struct EdgeIndex {
    name: String,
    dir: PathBuf,
    created: bool,
    shard: Arc<EdgeShard>,
    /// `None` once dropping.
    writer: Option<mpsc::UnboundedSender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Held for the life of the index: one process at a time.
    _lock: File,
    /// Dropped last, after the shard's final flush (a temporary directory, in tests).
    _guard: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl Drop for EdgeIndex {
    /// Lets the writer finish what it was given, so the shard's files are complete before the
    /// lock is released.
    fn drop(&mut self) {
        self.writer.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for EdgeIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeIndex")
            .field("name", &self.name)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

fn backend(e: impl std::fmt::Display) -> IndexError {
    IndexError::Backend(e.to_string())
}

/// The path of a payload field (only our fixed, plain field names are passed).
fn key(name: &str) -> JsonPath {
    name.parse()
        .unwrap_or_else(|()| unreachable!("{name} is a plain field name"))
}

/// Points whose payload `field` is one of `values`.
fn any_of(field: &str, values: &[Uuid]) -> Filter {
    Filter::new_must(Condition::Field(FieldCondition::new_match(
        key(field),
        Match::from(values.iter().map(Uuid::to_string).collect::<Vec<_>>()),
    )))
}

impl EdgeIndex {
    /// Opens (creating if needed) the index for `spec` under `root` (`<data dir>/knowledge`).
    pub fn open(root: &Path, spec: &IndexSpec) -> Result<Self> {
        let dir = root.join(spec.signature());
        std::fs::create_dir_all(&dir)
            .map_err(|e| backend(format!("cannot create {}: {e}", dir.display())))?;
        // The index's name is its place: the same directory however it was reached.
        let dir = dir
            .canonicalize()
            .map_err(|e| backend(format!("cannot resolve {}: {e}", dir.display())))?;
        let lock_path = dir.join("wasit.lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| backend(format!("cannot open {}: {e}", lock_path.display())))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(IndexError::Busy(format!(
                    "the knowledge index at {} is in use by another wasit process (is `wasit serve` \
                     running on this data dir?): stop it first, or use a Qdrant server (QDRANT_URL)",
                    dir.display()
                )));
            }
            Err(TryLockError::Error(e)) => {
                return Err(backend(format!("cannot lock {}: {e}", lock_path.display())));
            }
        }
        let (shard, created) = open_shard(&dir, spec)?;
        let shard = Arc::new(shard);
        let (tx, rx) = mpsc::unbounded_channel();
        let writer_shard = shard.clone();
        let thread = std::thread::Builder::new()
            .name("kb-index-writer".into())
            .spawn(move || write_loop(&writer_shard, rx))
            .map_err(|e| backend(format!("cannot start the index writer: {e}")))?;
        Ok(Self {
            name: format!("edge:{}", dir.display()),
            dir,
            created,
            shard,
            writer: Some(tx),
            thread: Some(thread),
            _lock: lock,
            _guard: None,
        })
    }

    /// Keeps `guard` alive until the index has written its last byte: for an index in a
    /// temporary directory, the directory.
    pub fn holding(mut self, guard: impl std::any::Any + Send + Sync) -> Self {
        self._guard = Some(Box::new(guard));
        self
    }

    fn send(&self, op: Op) -> BoxFuture<'_, Result<()>> {
        let (done, wait) = oneshot::channel();
        let sent = match &self.writer {
            Some(writer) => writer.send(Job { op, done }).map_err(|_| ()),
            None => Err(()),
        };
        Box::pin(async move {
            sent.map_err(|_| backend("the index writer has stopped"))?;
            wait.await
                .map_err(|_| backend("the index writer has stopped"))?
        })
    }
}

/// Below this many matching points per segment (a tenant and the global articles, usually), a
/// BM25 search scores the filtered points directly rather than walking whole posting lists of
/// common terms: over 100,000 chunks with 6,000 matching, BM25 p99 went from 5.6 to 3.1 ms
/// (qdrant-edge's default is 5,000; at 20,000 a 21,000-point filter became slower than the
/// posting lists; docs/BENCHMARKS.md).
const SPARSE_FULL_SCAN: usize = 10_000;

/// Scalar int8 quantisation, kept in RAM. (Its config type is not re-exported by qdrant-edge
/// 0.7.2; it is built from its documented serde form.)
fn int8_quantization() -> QuantizationConfig {
    serde_json::from_value(serde_json::json!(
        {"scalar": {"type": "int8", "quantile": 0.99, "always_ram": true}}
    ))
    .unwrap_or_else(|e| unreachable!("the int8 quantisation config is well-formed: {e}"))
}

fn open_shard(dir: &Path, spec: &IndexSpec) -> Result<(EdgeShard, bool)> {
    let has_segments = std::fs::read_dir(dir.join("segments"))
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false);
    if has_segments {
        let shard = EdgeShard::load(dir, None)
            .map_err(|e| backend(format!("cannot load {}: {e}", dir.display())))?;
        return Ok((shard, false));
    }
    let mut config = EdgeConfig {
        sparse_vectors: HashMap::from([(
            SPARSE.to_owned(),
            EdgeSparseVectorParams {
                modifier: Some(Modifier::Idf),
                full_scan_threshold: Some(SPARSE_FULL_SCAN),
                ..Default::default()
            },
        )]),
        ..Default::default()
    };
    if let Some((_, dims)) = &spec.dense {
        config.vectors.insert(
            DENSE.to_owned(),
            EdgeVectorParams {
                size: *dims,
                distance: Distance::Cosine,
                on_disk: None,
                multivector_config: None,
                datatype: None,
                // int8 copies in RAM for the search, the originals to rescore the candidates
                // (docs/BENCHMARKS.md has what it saved).
                quantization_config: Some(int8_quantization()),
                hnsw_config: None,
            },
        );
    }
    let shard = EdgeShard::new(dir, config)
        .map_err(|e| backend(format!("cannot create {}: {e}", dir.display())))?;
    // Keyword indexes for the two fields every filter uses.
    for field in ["tenant_id", "article_id"] {
        shard
            .update(UpdateOperation::FieldIndexOperation(
                qdrant_edge::FieldIndexOperations::CreateIndex(qdrant_edge::CreateIndex {
                    field_name: key(field),
                    field_schema: Some(PayloadFieldSchema::FieldType(PayloadSchemaType::Keyword)),
                }),
            ))
            .map_err(backend)?;
    }
    shard.flush();
    Ok((shard, true))
}

/// The writer actor: one write at a time, in arrival order. A panic inside the engine becomes
/// that write's error rather than the end of the writer.
fn write_loop(shard: &EdgeShard, mut jobs: mpsc::UnboundedReceiver<Job>) {
    while let Some(Job { op, done }) = jobs.blocking_recv() {
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| apply(shard, op)))
            .unwrap_or_else(|panic| {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(ToString::to_string)
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown".into());
                Err(backend(format!("the index engine panicked: {message}")))
            });
        let _ = done.send(result);
    }
}

fn apply(shard: &EdgeShard, op: Op) -> Result<()> {
    let update = |op: PointOperations| {
        shard
            .update(UpdateOperation::PointOperation(op))
            .map_err(backend)
    };
    match op {
        Op::Upsert(points) => {
            if points.is_empty() {
                return Ok(());
            }
            let points = points
                .into_iter()
                .map(to_point)
                .collect::<Result<Vec<_>>>()?;
            update(PointOperations::UpsertPoints(
                PointInsertOperations::PointsList(points),
            ))
        }
        Op::DeleteArticles(articles) => {
            if articles.is_empty() {
                return Ok(());
            }
            update(PointOperations::DeletePointsByFilter(any_of(
                "article_id",
                &articles,
            )))
        }
        Op::Clear => {
            let ids: Vec<PointId> = all_points(shard)?
                .into_iter()
                .map(|(id, _, _)| PointId::Uuid(id))
                .collect();
            if ids.is_empty() {
                return Ok(());
            }
            update(PointOperations::DeletePoints { ids })
        }
        Op::Flush => {
            shard.flush();
            Ok(())
        }
        Op::Optimize => shard.optimize().map(|_| ()).map_err(backend),
    }
}

fn to_point(point: IndexPoint) -> Result<qdrant_edge::PointStructPersisted> {
    let sparse = Vector::new_sparse(point.sparse.indices, point.sparse.values).map_err(backend)?;
    let mut vectors: Vec<(&str, Vector)> = vec![(SPARSE, sparse)];
    if let Some(dense) = point.dense {
        vectors.push((DENSE, Vector::new_dense(dense)));
    }
    let payload = serde_json::Value::Object(payload_json(&point.payload));
    Ok(PointStruct::new(
        PointId::Uuid(point.id),
        Vectors::new_named(vectors),
        payload,
    )
    .into())
}

fn point_uuid(id: &PointId) -> Option<Uuid> {
    match id {
        PointId::Uuid(u) => Some(*u),
        PointId::NumId(_) => None,
    }
}

fn all_points(shard: &EdgeShard) -> Result<Vec<(Uuid, Uuid, Uuid)>> {
    let mut out = Vec::new();
    let mut offset = None;
    loop {
        let (records, next) = shard
            .scroll(ScrollRequest {
                offset,
                limit: Some(1000),
                filter: None,
                with_payload: Some(WithPayloadInterface::Fields(vec![
                    key("article_id"),
                    key("tenant_id"),
                ])),
                with_vector: WithVector::Bool(false),
                order_by: None,
            })
            .map_err(backend)?;
        for record in records {
            let field = |name: &str| {
                record
                    .payload
                    .as_ref()
                    .and_then(|p| p.0.get(name))
                    .and_then(|v| v.as_str())
                    .and_then(|s| s.parse::<Uuid>().ok())
                    .unwrap_or_default()
            };
            // A point without a uuid id is not ours; one without fields shows as the nil uuid,
            // so a check reports it rather than missing it.
            if let Some(id) = point_uuid(&record.id) {
                out.push((id, field("article_id"), field("tenant_id")));
            }
        }
        match next {
            Some(next) => offset = Some(next),
            None => return Ok(out),
        }
    }
}

/// How wide the dense search looks (HNSW's `ef`): enough for the candidates, under the default
/// (the index's `ef_construct`, 100); with int8 quantisation it took hybrid p99 over 50,000
/// chunks from 4.8 to 3.6 ms (docs/BENCHMARKS.md).
const DENSE_EF: usize = 64;

/// The best `limit` points for one vector among the filtered ones, best first.
fn nearest_points(
    shard: &EdgeShard,
    vector: VectorInternal,
    using: &str,
    filter: &Filter,
    limit: usize,
    params: Option<SearchParams>,
    with_payload: bool,
) -> Result<Vec<ScoredPoint>> {
    shard
        .query(QueryRequest {
            prefetches: Vec::new(),
            query: Some(ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery {
                query: vector,
                using: Some(using.to_owned()),
            }))),
            filter: Some(filter.clone()),
            score_threshold: None,
            limit,
            offset: 0,
            params,
            with_vector: WithVector::Bool(false),
            with_payload: WithPayloadInterface::Bool(with_payload),
        })
        .map_err(backend)
}

/// Reciprocal-rank fusion of ranked lists, as Qdrant computes it (`1 / (k + position)`, the
/// first position 1) with k = [`RRF_K`]; best first, ties by first appearance.
fn fuse(lists: Vec<Vec<ScoredPoint>>, limit: usize) -> Vec<ScoredPoint> {
    let mut fused: Vec<ScoredPoint> = Vec::new();
    let mut at: std::collections::HashMap<PointId, usize> = std::collections::HashMap::new();
    for list in lists {
        for (position, mut point) in list.into_iter().enumerate() {
            let score = 1.0 / (RRF_K + position + 1) as f32;
            match at.get(&point.id) {
                Some(&i) => fused[i].score += score,
                None => {
                    at.insert(point.id, fused.len());
                    point.score = score;
                    fused.push(point);
                }
            }
        }
    }
    // Stable: equal scores keep their first appearance.
    fused.sort_by(|a, b| b.score.total_cmp(&a.score));
    fused.truncate(limit);
    fused
}

/// Reciprocal-rank fusion's constant (the server backend uses the same).
const RRF_K: usize = 60;

fn search(shard: &EdgeShard, query: IndexQuery) -> Result<Vec<IndexHit>> {
    if query.tenants.is_empty() || query.limit == 0 {
        return Ok(Vec::new());
    }
    let filter = any_of("tenant_id", &query.tenants);
    let candidates = query.candidates();
    let sparse: VectorInternal = Vector::new_sparse(query.sparse.indices, query.sparse.values)
        .map_err(backend)?
        .into();
    let points = match query.dense {
        None => nearest_points(shard, sparse, SPARSE, &filter, query.limit, None, true)?,
        Some(dense) => {
            // The two searches run side by side (the shard is read concurrently), then fuse.
            let params = SearchParams {
                hnsw_ef: Some(DENSE_EF.max(candidates)),
                ..Default::default()
            };
            let (sparse, dense) = std::thread::scope(|scope| {
                let dense = scope.spawn(|| {
                    let vector = Vector::new_dense(dense).into();
                    nearest_points(
                        shard,
                        vector,
                        DENSE,
                        &filter,
                        candidates,
                        Some(params),
                        false,
                    )
                });
                let sparse =
                    nearest_points(shard, sparse, SPARSE, &filter, candidates, None, false);
                let dense = dense
                    .join()
                    .unwrap_or_else(|_| Err(backend("the dense search panicked")));
                (sparse, dense)
            });
            let mut best = fuse(vec![sparse?, dense?], query.limit);
            // Payloads for the winners only (reading them is a good part of a search's cost).
            let ids: Vec<PointId> = best.iter().map(|p| p.id).collect();
            let mut payloads: std::collections::HashMap<PointId, _> = shard
                .retrieve(&ids, Some(WithPayloadInterface::Bool(true)), None)
                .map_err(backend)?
                .into_iter()
                .map(|r| (r.id, r.payload))
                .collect();
            for point in &mut best {
                point.payload = payloads.remove(&point.id).flatten();
            }
            best
        }
    };
    points
        .into_iter()
        .filter(|p| p.score > 0.0)
        .map(|p| {
            let chunk_id = point_uuid(&p.id)
                .ok_or_else(|| backend("a point has a numeric id; this index uses uuids"))?;
            let payload = payload_from(p.payload.map(|p| p.0).unwrap_or_default())?;
            Ok(IndexHit {
                chunk_id,
                score: p.score,
                payload,
            })
        })
        .collect()
}

impl VectorIndex for EdgeIndex {
    fn name(&self) -> &str {
        &self.name
    }

    fn created(&self) -> bool {
        self.created
    }

    fn upsert(&self, points: Vec<IndexPoint>) -> BoxFuture<'_, Result<()>> {
        self.send(Op::Upsert(points))
    }

    fn delete_articles(&self, articles: Vec<Uuid>) -> BoxFuture<'_, Result<()>> {
        self.send(Op::DeleteArticles(articles))
    }

    fn clear(&self) -> BoxFuture<'_, Result<()>> {
        self.send(Op::Clear)
    }

    fn flush(&self) -> BoxFuture<'_, Result<()>> {
        self.send(Op::Flush)
    }

    fn optimize(&self) -> BoxFuture<'_, Result<()>> {
        self.send(Op::Optimize)
    }

    fn search(&self, query: IndexQuery) -> BoxFuture<'_, Result<Vec<IndexHit>>> {
        let shard = self.shard.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || search(&shard, query))
                .await
                .map_err(|e| backend(format!("a search failed: {e}")))?
        })
    }

    fn points(&self) -> BoxFuture<'_, Result<Vec<(Uuid, Uuid, Uuid)>>> {
        let shard = self.shard.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || all_points(&shard))
                .await
                .map_err(|e| backend(format!("a scroll failed: {e}")))?
        })
    }

    fn generation(&self) -> BoxFuture<'_, Result<Option<Uuid>>> {
        let dir = self.dir.clone();
        Box::pin(async move {
            read_generation(&dir).map_err(|e| {
                backend(format!(
                    "cannot read {}: {e}",
                    dir.join(GENERATION_FILE).display()
                ))
            })
        })
    }

    fn set_generation(&self, generation: Option<Uuid>) -> BoxFuture<'_, Result<()>> {
        let dir = self.dir.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                write_generation(&dir, generation).map_err(|e| {
                    backend(format!(
                        "cannot write {}: {e}",
                        dir.join(GENERATION_FILE).display()
                    ))
                })
            })
            .await
            .map_err(|e| backend(format!("recording the generation failed: {e}")))?
        })
    }
}

/// The file that records the generation the shard holds.
const GENERATION_FILE: &str = "wasit-generation";

/// Writes `generation` (or removes the record) so that it survives a crash: a temporary file,
/// synced, renamed over the old one, and the directory synced.
fn write_generation(dir: &Path, generation: Option<Uuid>) -> std::io::Result<()> {
    let path = dir.join(GENERATION_FILE);
    match generation {
        None => match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        },
        Some(g) => {
            let tmp = dir.join(format!("{GENERATION_FILE}.tmp"));
            let mut file = File::create(&tmp)?;
            std::io::Write::write_all(&mut file, g.to_string().as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)?;
        }
    }
    File::open(dir)?.sync_all()
}

fn read_generation(dir: &Path) -> std::io::Result<Option<Uuid>> {
    match std::fs::read_to_string(dir.join(GENERATION_FILE)) {
        Ok(text) => Ok(text.trim().parse().ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
