//! Knowledge articles as the API shows them (writes go through `knowledge_base`, which chunks
//! them and keeps the index in step).

use runtime::db::TenantTx;
use serde::Serialize;
use time::OffsetDateTime;

use super::Cursor;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Article {
    pub id: uuid::Uuid,
    /// `api:<id>` for articles written through the API; the file's path for ingested ones.
    pub source: String,
    pub title: String,
    pub language: String,
    pub tags: Vec<String>,
    pub sector: Option<String>,
    pub body: String,
    pub content_hash: String,
    pub chunks: i64,
    /// Whether the vector index holds this version.
    pub indexed: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

const COLUMNS: &str =
    "a.id, a.source, a.title, a.language, a.tags, a.sector, a.body, a.content_hash,
    (SELECT count(*) FROM article_chunks c WHERE c.article_id = a.id) AS chunks,
    a.indexed_hash IS NOT DISTINCT FROM a.content_hash AS indexed, a.created_at, a.updated_at";

pub async fn list(
    tx: &mut TenantTx,
    after: Option<Cursor>,
    limit: i64,
) -> runtime::Result<Vec<Article>> {
    Ok(sqlx::query_as::<_, Article>(&format!(
        "SELECT {COLUMNS} FROM articles a
         WHERE a.tenant_id = wasit_current_tenant() AND a.deleted_at IS NULL
           AND ($1::timestamptz IS NULL OR (a.created_at, a.id) < ($1, $2))
         ORDER BY a.created_at DESC, a.id DESC
         LIMIT $3"
    ))
    .bind(after.map(|c| c.created_at))
    .bind(after.map(|c| c.id))
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}

/// A live article of the tenant; `lock`: for update, until the transaction ends.
pub async fn find(tx: &mut TenantTx, id: uuid::Uuid, lock: bool) -> runtime::Result<Article> {
    let lock = if lock { " FOR UPDATE OF a" } else { "" };
    sqlx::query_as::<_, Article>(&format!(
        "SELECT {COLUMNS} FROM articles a
         WHERE a.tenant_id = wasit_current_tenant() AND a.id = $1 AND a.deleted_at IS NULL{lock}"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(runtime::Error::NotFound("article"))
}
