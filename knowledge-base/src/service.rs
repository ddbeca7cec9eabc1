//! The knowledge base as the rest of Wasit sees it: articles written to PostgreSQL (the source of
//! truth) with their chunks, the vector index brought up to date from there, and hybrid search
//! filtered to a tenant's own and the global articles.
//!
//! Consistency: an article's row says what the index holds of it (`indexed_hash`,
//! `indexed_generation`), set only after the index made the write durable (`flush`). Anything
//! else — a new or changed article, a deleted one whose points are still there, an index created
//! empty or rebuilt — is found by [`KnowledgeBase::sync`], which start-up, ingestion and every API
//! write call. A crash at any point leaves rows that `sync` picks up again; writing an article's
//! points twice is harmless (its points are deleted by article before they are written).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use runtime::TenantId;
use runtime::db::begin_tenant;
use runtime::llm::TokenCounter;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::article::{Article, ArticleMeta};
use crate::bm25;
use crate::chunk::{ChunkOptions, chunk};
use crate::embed::Embedder;
use crate::index::{ChunkPayload, IndexError, IndexPoint, IndexQuery, VectorIndex};
use crate::normalize::detect;

/// The pseudo-tenant that owns global articles (see the knowledge migration).
pub const GLOBAL_TENANT: TenantId = TenantId(Uuid::from_u128(0xb));

/// BM25's average document length before any chunk exists to measure it.
const DEFAULT_AVG_LEN: f32 = 40.0;
/// Articles written to the index between two flushes.
const SYNC_BATCH: usize = 32;
/// Results a search returns at most.
pub const MAX_LIMIT: usize = 50;

/// What went wrong in the knowledge base.
#[derive(Debug, thiserror::Error)]
pub enum KbError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Database(#[from] runtime::Error),
    #[error("embeddings: {0}")]
    Embed(String),
    #[error("{0}")]
    Invalid(String),
}

impl From<sqlx::Error> for KbError {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(e.into())
    }
}

pub type Result<T, E = KbError> = std::result::Result<T, E>;

/// An article to store: from a file, or from the API.
#[derive(Debug, Clone)]
pub struct ArticleInput {
    /// The path below the ingested directory, or `api:<id>`.
    pub source: String,
    pub meta: ArticleMeta,
    pub body: String,
    /// SHA-256 of the article's bytes, hex.
    pub hash: String,
}

impl ArticleInput {
    /// An article read from `path`, known by its path below `root`.
    pub fn from_file(root: &Path, article: Article) -> Self {
        Self {
            source: Self::source_of(root, &article.path),
            meta: article.meta,
            body: article.body,
            hash: article.hash,
        }
    }

    /// How a file below `root` is known: its relative path, with `/` separators.
    pub fn source_of(root: &Path, path: &Path) -> String {
        let relative = path.strip_prefix(root).unwrap_or(path);
        relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/")
    }

    /// An article written through the API: its hash covers every field.
    pub fn from_api(source: String, meta: ArticleMeta, body: String) -> Self {
        let mut hasher = Sha256::new();
        let canonical = serde_json::json!({
            "title": meta.title, "language": meta.language, "tags": meta.tags,
            "sector": meta.sector, "body": body,
        });
        hasher.update(canonical.to_string().as_bytes());
        Self {
            source,
            meta,
            body,
            hash: hex::encode(hasher.finalize()),
        }
    }
}

/// What storing an article did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stored {
    Created,
    Updated,
    Unchanged,
}

/// A search result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchHit {
    pub article_id: Uuid,
    pub chunk_id: Uuid,
    pub title: String,
    pub heading_path: Vec<String>,
    pub text: String,
    pub score: f32,
    /// Whether it is a global article rather than the tenant's own.
    pub global: bool,
}

impl SearchHit {
    /// `Title › Heading › Subheading`: how a citation names the passage.
    pub fn citation(&self) -> String {
        std::iter::once(self.title.as_str())
            .chain(self.heading_path.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" › ")
    }
}

/// Progress of long work, for a progress bar.
pub trait Progress: Send + Sync {
    /// `done` of `total` articles written to the index, with their chunks so far.
    fn indexed(&self, done: usize, total: usize, chunks: usize);
}

impl Progress for () {
    fn indexed(&self, _: usize, _: usize, _: usize) {}
}

/// What [`KnowledgeBase::sync`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub articles: usize,
    pub removed: usize,
    pub chunks: usize,
}

#[derive(Debug, Clone, Copy)]
struct Generation {
    id: Uuid,
    avg_len: f32,
}

/// The knowledge base: PostgreSQL, the vector index, and the embedder if any.
pub struct KnowledgeBase {
    pool: PgPool,
    index: Arc<dyn VectorIndex>,
    embedder: Option<Arc<dyn Embedder>>,
    counter: Arc<dyn TokenCounter>,
    options: ChunkOptions,
    /// Makes this process's syncs one at a time (processes sharing an index also take a
    /// PostgreSQL advisory lock), and remembers whether the index was checked against the
    /// other generations PostgreSQL knows (once per process).
    sync_lock: Mutex<bool>,
}

impl std::fmt::Debug for KnowledgeBase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnowledgeBase")
            .field("index", &self.index)
            .field("embedder", &self.embedder)
            .finish_non_exhaustive()
    }
}

#[derive(sqlx::FromRow)]
struct ChunkRow {
    id: Uuid,
    ordinal: i32,
    heading_path: Vec<String>,
    text: String,
    language: String,
}

impl KnowledgeBase {
    /// A knowledge base over `pool` (the application pool) and `index`. Call [`Self::sync`]
    /// next to bring the index up to date.
    pub async fn new(
        pool: PgPool,
        index: Arc<dyn VectorIndex>,
        embedder: Option<Arc<dyn Embedder>>,
        counter: Arc<dyn TokenCounter>,
    ) -> Result<Self> {
        Ok(Self {
            pool,
            index,
            embedder,
            counter,
            options: ChunkOptions::default(),
            sync_lock: Mutex::new(false),
        })
    }

    pub fn index(&self) -> &Arc<dyn VectorIndex> {
        &self.index
    }

    pub fn embedder(&self) -> Option<&Arc<dyn Embedder>> {
        self.embedder.as_ref()
    }

    /// Stores an article of `tenant` (chunked), matched by its source: created, replaced if its
    /// hash differs, or left alone. The index catches up at the next [`Self::sync`].
    pub async fn put(&self, tenant: TenantId, input: &ArticleInput) -> Result<(Uuid, Stored)> {
        let mut tx = begin_tenant(&self.pool, tenant).await?;
        let stored = self.put_in(&mut tx, input).await?;
        tx.commit().await.map_err(runtime::Error::from)?;
        Ok(stored)
    }

    /// [`Self::put`] inside the caller's tenant transaction (which the caller commits).
    pub async fn put_in(
        &self,
        tx: &mut runtime::db::TenantTx,
        input: &ArticleInput,
    ) -> Result<(Uuid, Stored)> {
        check_input(input)?;
        let existing: Option<(Uuid, String, bool)> = sqlx::query_as(
            "SELECT id, content_hash, deleted_at IS NOT NULL FROM articles WHERE source = $1 FOR UPDATE",
        )
        .bind(&input.source)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some((id, hash, false)) = &existing
            && *hash == input.hash
        {
            return Ok((*id, Stored::Unchanged));
        }
        let meta = &input.meta;
        let id: Uuid = sqlx::query_scalar(
            "INSERT INTO articles (tenant_id, source, title, language, tags, sector, body, content_hash)
             VALUES (wasit_current_tenant(), $1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (tenant_id, source) DO UPDATE SET
                 title = EXCLUDED.title, language = EXCLUDED.language, tags = EXCLUDED.tags,
                 sector = EXCLUDED.sector, body = EXCLUDED.body, content_hash = EXCLUDED.content_hash,
                 -- New chunks (new ids): whatever the index held of it is stale, even at the
                 -- same hash (an article revived before its deletion reached the index).
                 indexed_hash = NULL, deleted_at = NULL, updated_at = now(),
                 revision = articles.revision + 1
             RETURNING id",
        )
        .bind(&input.source)
        .bind(&meta.title)
        .bind(&meta.language)
        .bind(&meta.tags)
        .bind(&meta.sector)
        .bind(&input.body)
        .bind(&input.hash)
        .fetch_one(&mut **tx)
        .await
        .map_err(|e| match runtime::Error::from(e) {
            runtime::Error::Invalid(m) => KbError::Invalid(m),
            other => KbError::Database(other),
        })?;
        self.write_chunks(tx, id, meta, &input.body).await?;
        let stored = if existing.is_some() {
            Stored::Updated
        } else {
            Stored::Created
        };
        Ok((id, stored))
    }

    async fn write_chunks(
        &self,
        tx: &mut runtime::db::TenantTx,
        article: Uuid,
        meta: &ArticleMeta,
        body: &str,
    ) -> Result<()> {
        sqlx::query("DELETE FROM article_chunks WHERE article_id = $1")
            .bind(article)
            .execute(&mut **tx)
            .await?;
        let chunks = chunk(body, self.counter.as_ref(), self.options);
        let mut ordinals = Vec::new();
        let mut paths = Vec::new();
        let mut texts = Vec::new();
        let mut tokens = Vec::new();
        let mut languages = Vec::new();
        let mut term_counts = Vec::new();
        for c in &chunks {
            ordinals.push(c.ordinal as i32);
            // Arrays of arrays must be rectangular in PostgreSQL: the path travels as JSON.
            paths.push(serde_json::to_string(&c.heading_path).unwrap_or_else(|_| "[]".into()));
            texts.push(c.text.clone());
            tokens.push(c.tokens as i32);
            languages.push(detect(&c.text).code());
            term_counts.push(
                bm25::index_terms(&format!("{}\n{}", meta.title, c.indexed_text())).len() as i32,
            );
        }
        sqlx::query(
            "INSERT INTO article_chunks (tenant_id, article_id, ordinal, heading_path, text, tokens, language, term_count)
             SELECT wasit_current_tenant(), $1, o, ARRAY(SELECT jsonb_array_elements_text(p::jsonb)), t, k, l, n
             FROM UNNEST($2::int[], $3::text[], $4::text[], $5::int[], $6::text[], $7::int[]) AS u(o, p, t, k, l, n)",
        )
        .bind(article)
        .bind(&ordinals)
        .bind(&paths)
        .bind(&texts)
        .bind(&tokens)
        .bind(&languages)
        .bind(&term_counts)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Marks an article deleted (answers whether it existed); its points go at the next sync,
    /// then the row.
    pub async fn delete(&self, tenant: TenantId, article: Uuid) -> Result<bool> {
        let mut tx = begin_tenant(&self.pool, tenant).await?;
        let hit = Self::delete_in(&mut tx, article).await?;
        tx.commit().await.map_err(runtime::Error::from)?;
        Ok(hit)
    }

    /// [`Self::delete`] inside the caller's tenant transaction (which the caller commits).
    pub async fn delete_in(tx: &mut runtime::db::TenantTx, article: Uuid) -> Result<bool> {
        let hit = sqlx::query(
            "UPDATE articles SET deleted_at = now(), updated_at = now(), revision = revision + 1
             WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(article)
        .execute(&mut **tx)
        .await?
        .rows_affected()
            == 1;
        sqlx::query("DELETE FROM article_chunks WHERE article_id = $1")
            .bind(article)
            .execute(&mut **tx)
            .await?;
        Ok(hit)
    }

    /// Marks deleted the file-sourced articles of `tenant` whose source is not in `keep`; the
    /// sources marked.
    pub async fn delete_missing(&self, tenant: TenantId, keep: &[String]) -> Result<Vec<String>> {
        let mut tx = begin_tenant(&self.pool, tenant).await?;
        let gone: Vec<(Uuid, String)> = sqlx::query_as(
            "UPDATE articles SET deleted_at = now(), updated_at = now(), revision = revision + 1
             WHERE deleted_at IS NULL AND source NOT LIKE 'api:%' AND NOT (source = ANY($1))
             RETURNING id, source",
        )
        .bind(keep)
        .fetch_all(&mut *tx)
        .await?;
        let ids: Vec<Uuid> = gone.iter().map(|g| g.0).collect();
        sqlx::query("DELETE FROM article_chunks WHERE article_id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await.map_err(runtime::Error::from)?;
        let mut sources: Vec<String> = gone.into_iter().map(|g| g.1).collect();
        sources.sort();
        Ok(sources)
    }

    /// Brings the index up to date with PostgreSQL: writes every article it lacks or holds stale,
    /// drops the points of deleted ones, and records each as indexed once flushed. Rebuilds the
    /// index first when it does not hold the generation PostgreSQL has on record for it (new,
    /// emptied, or interrupted in a rebuild), when another index was fed meanwhile (it would have
    /// missed deletions), or when BM25's average document length has drifted by over a quarter.
    pub async fn sync(&self, progress: &dyn Progress) -> Result<SyncReport> {
        self.exclusively(false, progress).await
    }

    /// Rebuilds the index from PostgreSQL: empties it, starts a new generation (measuring the
    /// average document length again), and writes every article.
    pub async fn reindex(&self, progress: &dyn Progress) -> Result<SyncReport> {
        self.exclusively(true, progress).await
    }

    /// Runs a sync (or a rebuild) alone: one at a time in this process, and across processes
    /// sharing the index (an advisory lock held on a connection of its own; a process that dies
    /// releases it). Optimises afterwards, outside the locks.
    async fn exclusively(&self, rebuild: bool, progress: &dyn Progress) -> Result<SyncReport> {
        let report = {
            let mut checked = self.sync_lock.lock().await;
            let mut lock = self.pool.acquire().await?;
            sqlx::query("SELECT pg_advisory_lock(hashtext($1))")
                .bind(self.index.name())
                .execute(&mut *lock)
                .await?;
            let result = self.sync_locked(rebuild, &mut checked, progress).await;
            let unlocked = sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
                .bind(self.index.name())
                .execute(&mut *lock)
                .await;
            if unlocked.is_err() {
                // The lock goes with the connection.
                lock.detach();
            }
            result?
        };
        // After a batch or more (ingest, start-up, rebuild), let the index build its search
        // structures now; a single API write leaves that to the next big sync.
        if report.articles >= SYNC_BATCH {
            self.index.optimize().await?;
        }
        Ok(report)
    }

    async fn sync_locked(
        &self,
        rebuild: bool,
        checked: &mut bool,
        progress: &dyn Progress,
    ) -> Result<SyncReport> {
        let mut current = self.recorded_generation().await?;
        if let Some(g) = current
            && !*checked
        {
            let others: bool = sqlx::query_scalar("SELECT wasit_kb_other_generations($1)")
                .bind(g.id)
                .fetch_one(&self.pool)
                .await?;
            if others {
                tracing::info!(
                    index = self.index.name(),
                    "another index was fed since this one: rebuilding it"
                );
                current = None;
            }
        }
        *checked = true;
        if let Some(g) = current {
            let measured = self.average_terms().await?;
            if measured.is_some_and(|m| (m - g.avg_len).abs() > g.avg_len / 4.0) {
                tracing::info!(
                    index = self.index.name(),
                    was = g.avg_len,
                    now = measured,
                    "BM25's average chunk length has drifted: rebuilding the index"
                );
                current = None;
            }
        }
        let current = match current {
            Some(g) if !rebuild => g,
            _ => self.new_generation().await?,
        };
        let stale: Vec<(Uuid, Uuid)> =
            sqlx::query_as("SELECT tenant_id, article_id FROM wasit_articles_to_index($1)")
                .bind(current.id)
                .fetch_all(&self.pool)
                .await?;
        let total = stale.len();
        let mut report = SyncReport::default();
        progress.indexed(0, total, 0);
        for batch in stale.chunks(SYNC_BATCH) {
            let mut written: Vec<(TenantId, Uuid, Option<String>, i64)> = Vec::new();
            let mut points = Vec::new();
            let mut texts = Vec::new();
            for (tenant, article) in batch {
                let tenant = TenantId(*tenant);
                let (hash, revision, mut article_points) =
                    self.article_points(tenant, *article, current).await?;
                if hash.is_none() {
                    report.removed += 1;
                }
                texts.extend(
                    article_points
                        .iter()
                        .map(|p: &IndexPoint| format!("{}\n{}", p.payload.title, p.payload.text)),
                );
                points.append(&mut article_points);
                written.push((tenant, *article, hash, revision));
            }
            if let Some(embedder) = &self.embedder
                && !texts.is_empty()
            {
                let vectors = embedder.embed(&texts).await.map_err(KbError::Embed)?;
                for (point, vector) in points.iter_mut().zip(vectors) {
                    point.dense = Some(vector);
                }
            }
            report.chunks += points.len();
            self.index
                .delete_articles(written.iter().map(|w| w.1).collect())
                .await?;
            self.index.upsert(points).await?;
            self.index.flush().await?;
            for (tenant, article, hash, revision) in &written {
                self.mark_indexed(*tenant, *article, hash.as_deref(), *revision, current.id)
                    .await?;
            }
            report.articles += written.len();
            progress.indexed(report.articles, total, report.chunks);
        }
        Ok(report)
    }

    /// The generation PostgreSQL has on record for the index, if the index says it holds it.
    async fn recorded_generation(&self) -> Result<Option<Generation>> {
        let row: Option<(Uuid, f32)> =
            sqlx::query_as("SELECT generation, avg_len FROM kb_indexes WHERE name = $1")
                .bind(self.index.name())
                .fetch_optional(&self.pool)
                .await?;
        let held = self.index.generation().await?;
        Ok(row
            .filter(|(id, _)| held == Some(*id))
            .map(|(id, avg_len)| Generation { id, avg_len }))
    }

    /// BM25's average document length over the live chunks, if there are any.
    async fn average_terms(&self) -> Result<Option<f32>> {
        let measured: Option<f32> = sqlx::query_scalar("SELECT wasit_kb_average_terms()")
            .fetch_one(&self.pool)
            .await?;
        Ok(measured.filter(|a| *a > 0.0))
    }

    /// Starts a new generation: the index says it holds none (durably), is emptied, PostgreSQL
    /// records the new generation (with the average document length measured on its chunks),
    /// and the index says it holds it. A crash anywhere in between leaves an index whose record
    /// differs from PostgreSQL's, which the next sync rebuilds again; every article, stale
    /// against the new generation, is then written.
    async fn new_generation(&self) -> Result<Generation> {
        self.index.set_generation(None).await?;
        self.index.clear().await?;
        self.index.flush().await?;
        let g = Generation {
            id: Uuid::new_v4(),
            avg_len: self.average_terms().await?.unwrap_or(DEFAULT_AVG_LEN),
        };
        sqlx::query(
            "INSERT INTO kb_indexes (name, generation, avg_len) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET generation = EXCLUDED.generation,
                 avg_len = EXCLUDED.avg_len, created_at = now()",
        )
        .bind(self.index.name())
        .bind(g.id)
        .bind(g.avg_len)
        .execute(&self.pool)
        .await?;
        self.index.set_generation(Some(g.id)).await?;
        Ok(g)
    }

    /// An article's points as PostgreSQL holds them now, with the hash and revision they are of
    /// (no hash for an article that is deleted or gone).
    async fn article_points(
        &self,
        tenant: TenantId,
        article: Uuid,
        generation: Generation,
    ) -> Result<(Option<String>, i64, Vec<IndexPoint>)> {
        let mut tx = begin_tenant(&self.pool, tenant).await?;
        let row: Option<(String, String, bool, i64)> = sqlx::query_as(
            "SELECT title, content_hash, deleted_at IS NOT NULL, revision FROM articles WHERE id = $1",
        )
        .bind(article)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((title, hash, false, revision)) = row else {
            return Ok((None, row.map_or(0, |r| r.3), Vec::new()));
        };
        let chunks: Vec<ChunkRow> = sqlx::query_as(
            "SELECT id, ordinal, heading_path, text, language FROM article_chunks
             WHERE article_id = $1 ORDER BY ordinal",
        )
        .bind(article)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await.map_err(runtime::Error::from)?;
        let points = chunks
            .into_iter()
            .map(|c| {
                let indexed = if c.heading_path.is_empty() {
                    format!("{title}\n{}", c.text)
                } else {
                    format!("{title}\n{}\n{}", c.heading_path.join(" › "), c.text)
                };
                let (sparse, _) = bm25::document_vector(&indexed, generation.avg_len);
                IndexPoint {
                    id: c.id,
                    payload: ChunkPayload {
                        tenant_id: tenant.0,
                        article_id: article,
                        ordinal: c.ordinal.max(0) as u32,
                        title: title.clone(),
                        heading_path: c.heading_path,
                        text: c.text,
                        language: c.language,
                    },
                    sparse,
                    dense: None,
                }
            })
            .collect();
        Ok((Some(hash), revision, points))
    }

    /// Records that the index holds `article` at `revision` (or, deleted, holds none of it):
    /// only if the row is still at that revision, so a write or delete that raced the sync
    /// leaves it stale for the next one.
    async fn mark_indexed(
        &self,
        tenant: TenantId,
        article: Uuid,
        hash: Option<&str>,
        revision: i64,
        generation: Uuid,
    ) -> Result<()> {
        let mut tx = begin_tenant(&self.pool, tenant).await?;
        match hash {
            Some(hash) => {
                sqlx::query(
                    "UPDATE articles SET indexed_hash = $2, indexed_generation = $3
                     WHERE id = $1 AND revision = $4 AND deleted_at IS NULL",
                )
                .bind(article)
                .bind(hash)
                .bind(generation)
                .bind(revision)
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query(
                    "DELETE FROM articles WHERE id = $1 AND revision = $2 AND deleted_at IS NOT NULL",
                )
                .bind(article)
                .bind(revision)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await.map_err(runtime::Error::from)?;
        Ok(())
    }

    /// The best passages for `query` among `tenant`'s own and the global articles: BM25 always,
    /// fused with dense similarity (reciprocal-rank fusion) when an embedder is configured. If
    /// the embedder fails, BM25 answers alone (and the failure is logged).
    pub async fn search(
        &self,
        tenant: TenantId,
        query: &str,
        limit: usize,
    ) -> Result<Vec<SearchHit>> {
        let limit = limit.clamp(1, MAX_LIMIT);
        let sparse = bm25::query_vector(query);
        let dense = match &self.embedder {
            Some(embedder) if !query.trim().is_empty() => {
                match embedder.embed(&[query.to_owned()]).await {
                    Ok(mut v) => v.pop(),
                    Err(e) => {
                        tracing::warn!("query embedding failed, searching with BM25 alone: {e}");
                        None
                    }
                }
            }
            _ => None,
        };
        if sparse.indices.is_empty() && dense.is_none() {
            return Ok(Vec::new());
        }
        let hits = self
            .index
            .search(IndexQuery {
                tenants: vec![tenant.0, GLOBAL_TENANT.0],
                sparse,
                dense,
                limit,
            })
            .await?;
        let mut seen = std::collections::HashSet::new();
        Ok(hits
            .into_iter()
            // The filter is the index's; this is the second lock on the door.
            .filter(|h| h.payload.tenant_id == tenant.0 || h.payload.tenant_id == GLOBAL_TENANT.0)
            .filter(|h| seen.insert(h.chunk_id))
            .map(|h| SearchHit {
                article_id: h.payload.article_id,
                chunk_id: h.chunk_id,
                global: h.payload.tenant_id == GLOBAL_TENANT.0,
                title: h.payload.title,
                heading_path: h.payload.heading_path,
                text: h.payload.text,
                score: h.score,
            })
            .collect())
    }

    /// Whether the index holds exactly the chunks of the live articles PostgreSQL holds (for
    /// every tenant): the differences, empty when they agree. Reads across tenants with the
    /// pool given (the owner's, for operators and tests).
    pub async fn check(&self, owner: &PgPool) -> Result<Vec<String>> {
        let expected: Vec<(Uuid, Uuid, Uuid)> = sqlx::query_as(
            "SELECT c.id, c.article_id, c.tenant_id FROM article_chunks c
             JOIN articles a ON a.tenant_id = c.tenant_id AND a.id = c.article_id
             WHERE a.deleted_at IS NULL",
        )
        .fetch_all(owner)
        .await?;
        let expected: BTreeMap<Uuid, (Uuid, Uuid)> =
            expected.into_iter().map(|(c, a, t)| (c, (a, t))).collect();
        let actual: BTreeMap<Uuid, (Uuid, Uuid)> = self
            .index
            .points()
            .await?
            .into_iter()
            .map(|(c, a, t)| (c, (a, t)))
            .collect();
        let mut problems = Vec::new();
        for (chunk, (article, tenant)) in &expected {
            match actual.get(chunk) {
                None => problems.push(format!(
                    "chunk {chunk} of article {article} is not in the index"
                )),
                Some(held) if held != &(*article, *tenant) => problems.push(format!(
                    "chunk {chunk} is in the index as article {} of tenant {}, not article {article} of tenant {tenant}",
                    held.0, held.1
                )),
                Some(_) => {}
            }
        }
        for (chunk, (article, _)) in &actual {
            if !expected.contains_key(chunk) {
                problems.push(format!(
                    "the index holds chunk {chunk} of article {article}, which PostgreSQL does not"
                ));
            }
        }
        Ok(problems)
    }
}

/// What PostgreSQL would refuse, refused first with a message that names the field.
fn check_input(input: &ArticleInput) -> Result<()> {
    crate::article::check_meta(&input.meta).map_err(KbError::Invalid)?;
    let invalid = |m: &str| Err(KbError::Invalid(m.to_owned()));
    let meta = &input.meta;
    let fields = [&meta.title, &meta.language, &input.body, &input.source];
    if fields
        .into_iter()
        .chain(&meta.tags)
        .chain(&meta.sector)
        .any(|f| f.contains('\0'))
    {
        return invalid("a NUL character is not text");
    }
    if input.body.trim().is_empty() || input.body.chars().count() > MAX_BODY_CHARS {
        return invalid("the body is Markdown of 1 to 200,000 characters");
    }
    if input.source.chars().count() > 500 {
        return invalid("the file's path below the directory is longer than 500 characters");
    }
    Ok(())
}

/// The longest article body, in characters.
pub const MAX_BODY_CHARS: usize = 200_000;

/// Every `*.md` file below `dir`, sorted, skipping hidden entries.
pub fn markdown_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            // Symbolic links are followed, as the editor that wrote them meant.
            if std::fs::metadata(&path)?.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Opens the knowledge base the settings describe: a Qdrant server's collection when
/// `QDRANT_URL` is set, else the embedded index under `<data dir>/knowledge`; dense embeddings
/// when `EMBEDDING_MODEL` is set (served by `llm`, which must then be an OpenAI-compatible
/// endpoint). Does not sync; call [`KnowledgeBase::sync`].
pub async fn open(
    settings: &runtime::Settings,
    pool: PgPool,
    llm: Option<&runtime::llm::Llm>,
) -> Result<KnowledgeBase> {
    let embedder: Option<Arc<dyn Embedder>> = match &settings.embedding_model {
        None => None,
        Some(model) => {
            let llm = llm.filter(|l| l.provider().selects_models()).ok_or_else(|| {
                KbError::Invalid(format!(
                    "EMBEDDING_MODEL={model} needs an OpenAI-compatible endpoint: set LLM_BASE_URL \
                     (or unset EMBEDDING_MODEL for BM25 alone)"
                ))
            })?;
            let embedder = crate::embed::OpenAiEmbedder::connect(llm.clone(), model)
                .await
                .map_err(KbError::Embed)?;
            Some(Arc::new(embedder))
        }
    };
    let spec = crate::index::IndexSpec {
        dense: embedder.as_ref().map(|e| (e.model().to_owned(), e.dims())),
    };
    let index: Arc<dyn VectorIndex> = match &settings.qdrant_url {
        Some(url) => Arc::new(crate::index::server::ServerIndex::open(url, &spec).await?),
        None => {
            let root = settings.data_dir.join("knowledge");
            Arc::new(crate::index::edge::EdgeIndex::open(&root, &spec)?)
        }
    };
    let counter = runtime::llm::tokens::TiktokenCounter::for_model("gpt-4o-mini");
    KnowledgeBase::new(pool, index, embedder, counter).await
}
