//! Knowledge articles: `GET/POST /articles`, `GET/PUT/DELETE /articles/{id}`, and
//! `GET /articles/search` (the passages agents would find). Articles written here are the
//! tenant's own; the index catches up before the answer (and at the next start if it could not).
//! Articles ingested from files belong to their files: edit the file and ingest again.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use knowledge_base::article::ArticleMeta;
use knowledge_base::service::{ArticleInput, KbError, KnowledgeBase, SearchHit};
use serde::{Deserialize, Serialize};

use super::{Page, PageQuery};
use crate::app::AppState;
use crate::auth::{AuthUser, Role};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::repo::Cursor;
use crate::repo::articles::{self, Article};
use crate::repo::audit;

/// Who may read articles and search them.
pub const READERS: &[Role] = &[
    Role::Superadmin,
    Role::Admin,
    Role::SalesManager,
    Role::SalesRep,
    Role::PromptEngineer,
];
/// Who may write them.
pub const WRITERS: &[Role] = &[Role::Superadmin, Role::Admin, Role::PromptEngineer];

fn knowledge(state: &AppState) -> Result<&KnowledgeBase, ApiError> {
    state.knowledge.as_deref().ok_or_else(|| {
        ApiError::Unavailable("the knowledge base is not available on this server".into())
    })
}

fn kb_error(e: KbError) -> ApiError {
    match e {
        KbError::Invalid(m) => ApiError::Invalid(m),
        KbError::Database(e) => e.into(),
        other => ApiError::internal(anyhow::Error::from(other)),
    }
}

fn article_id(raw: &str) -> Result<uuid::Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound("article"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<Article>>, ApiError> {
    auth.require(READERS)?;
    let limit = PageQuery::limit_of(q.limit)?;
    let after = super::parse_cursor(q.cursor.as_deref())?;
    let mut tx = auth.begin(&state.db).await?;
    let items = articles::list(&mut tx, after, limit + 1).await?;
    tx.commit().await?;
    Ok(Json(Page::from_rows(items, limit, |a| {
        Cursor::new(a.created_at, a.id)
    })))
}

pub async fn get(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Article>, ApiError> {
    auth.require(READERS)?;
    let id = article_id(&id)?;
    let mut tx = auth.begin(&state.db).await?;
    let article = articles::find(&mut tx, id, false).await?;
    tx.commit().await?;
    Ok(Json(article))
}

/// An article's content, as written through the API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteArticle {
    pub title: String,
    /// `ar`, `en`, … (two or three lower-case letters, optionally `-REGION`).
    pub language: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub sector: Option<String>,
    /// Markdown.
    pub body: String,
}

impl WriteArticle {
    /// The article to store (the knowledge base checks it and answers 422 naming the field).
    fn into_input(self, source: String) -> ArticleInput {
        let meta = ArticleMeta {
            title: self.title.trim().to_owned(),
            language: self.language,
            tags: self.tags.into_iter().map(|t| t.trim().to_owned()).collect(),
            sector: self.sector.map(|s| s.trim().to_owned()),
        };
        ArticleInput::from_api(source, meta, self.body)
    }
}

/// Brings the index up to date with what was just committed. If it cannot, the article is safe
/// in PostgreSQL (`indexed: false`) and a later sync indexes it.
async fn catch_up(kb: &KnowledgeBase) {
    if let Err(e) = kb.sync(&()).await {
        tracing::warn!("the knowledge index could not catch up (a later sync will): {e}");
    }
}

/// The article as it is now (after the index caught up).
async fn reread(state: &AppState, auth: &AuthUser, id: uuid::Uuid) -> Result<Article, ApiError> {
    let mut tx = auth.begin(&state.db).await?;
    let article = articles::find(&mut tx, id, false).await?;
    tx.commit().await?;
    Ok(article)
}

pub async fn create(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(req): ApiJson<WriteArticle>,
) -> Result<(StatusCode, Json<Article>), ApiError> {
    auth.require(WRITERS)?;
    let kb = knowledge(&state)?;
    let input = req.into_input(format!("api:{}", uuid::Uuid::new_v4()));
    let mut tx = auth.begin(&state.db).await?;
    let (id, _) = kb.put_in(&mut tx, &input).await.map_err(kb_error)?;
    let article = articles::find(&mut tx, id, false).await?;
    audit::record_new(&mut tx, &auth, "create", "article", id, &article).await?;
    tx.commit().await?;
    catch_up(kb).await;
    Ok((StatusCode::CREATED, Json(reread(&state, &auth, id).await?)))
}

/// A writer's transaction on one of the tenant's articles that the API may change: those written
/// through it (ingested ones belong to their files: 409). The row is locked, so a delete cannot
/// slip between this read and the write.
async fn editable<'s>(
    state: &'s AppState,
    auth: &AuthUser,
    id: &str,
) -> Result<(&'s KnowledgeBase, runtime::db::TenantTx, Article), ApiError> {
    auth.require(WRITERS)?;
    let kb = knowledge(state)?;
    let id = article_id(id)?;
    let mut tx = auth.begin(&state.db).await?;
    let article = articles::find(&mut tx, id, true).await?;
    if !article.source.starts_with("api:") {
        return Err(ApiError::Conflict(format!(
            "this article comes from the file {}: edit the file and run `wasit kb ingest` again",
            article.source
        )));
    }
    Ok((kb, tx, article))
}

pub async fn replace(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<WriteArticle>,
) -> Result<Json<Article>, ApiError> {
    let (kb, mut tx, before) = editable(&state, &auth, &id).await?;
    let input = req.into_input(before.source.clone());
    kb.put_in(&mut tx, &input).await.map_err(kb_error)?;
    let after = articles::find(&mut tx, before.id, false).await?;
    audit::record(
        &mut tx, &auth, "update", "article", before.id, &before, &after,
    )
    .await?;
    tx.commit().await?;
    catch_up(kb).await;
    Ok(Json(reread(&state, &auth, before.id).await?))
}

pub async fn delete(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (kb, mut tx, before) = editable(&state, &auth, &id).await?;
    KnowledgeBase::delete_in(&mut tx, before.id)
        .await
        .map_err(kb_error)?;
    let gone = serde_json::Value::Null;
    audit::record(
        &mut tx, &auth, "delete", "article", before.id, &before, &gone,
    )
    .await?;
    tx.commit().await?;
    catch_up(kb).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    pub q: Option<String>,
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct SearchResults {
    pub items: Vec<SearchHit>,
}

pub async fn search(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> Result<Json<SearchResults>, ApiError> {
    auth.require(READERS)?;
    let kb = knowledge(&state)?;
    let limit = q.limit.unwrap_or(8);
    let text = q.q.unwrap_or_default();
    if text.trim().is_empty()
        || text.len() > 2000
        || !(1..=knowledge_base::service::MAX_LIMIT).contains(&limit)
    {
        return Err(ApiError::Invalid(
            "q is the question (1 to 2,000 bytes) and limit is 1 to 50".into(),
        ));
    }
    let items = kb
        .search(auth.tenant, &text, limit)
        .await
        .map_err(kb_error)?;
    Ok(Json(SearchResults { items }))
}
