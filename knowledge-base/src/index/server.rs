//! A Qdrant server, through `qdrant-client` (gRPC), when `QDRANT_URL` is set. One collection per
//! index shape (`wasit_kb_<signature>`), with keyword indexes on the tenant and article fields.
//! Writes wait for the server to apply them, so `flush` has nothing left to do.

use std::collections::HashMap;

use qdrant_client::Qdrant;
use qdrant_client::qdrant::{
    Condition, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder, DeletePointsBuilder,
    Distance, FieldType, Filter, Fusion, Modifier, NamedVectors, PointId, PointStruct,
    PrefetchQueryBuilder, Query, QueryPointsBuilder, ScrollPointsBuilder,
    SparseVectorParamsBuilder, SparseVectorsConfigBuilder, UpsertPointsBuilder, Vector,
    VectorInput, VectorParamsBuilder, VectorsConfigBuilder, point_id::PointIdOptions,
};
use uuid::Uuid;

use super::{
    BoxFuture, DENSE, IndexError, IndexHit, IndexPoint, IndexQuery, IndexSpec, Result, SPARSE,
    VectorIndex, payload_from, payload_json,
};

/// A collection on a Qdrant server.
pub struct ServerIndex {
    name: String,
    collection: String,
    created: bool,
    client: Qdrant,
}

impl std::fmt::Debug for ServerIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIndex")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn backend(e: impl std::fmt::Display) -> IndexError {
    IndexError::Backend(e.to_string())
}

/// Points whose payload `field` is one of `values`.
fn any_of(field: &str, values: &[Uuid]) -> Filter {
    Filter::must([Condition::matches(
        field,
        values.iter().map(Uuid::to_string).collect::<Vec<_>>(),
    )])
}

fn point_uuid(id: Option<PointId>) -> Option<Uuid> {
    match id?.point_id_options? {
        PointIdOptions::Uuid(s) => s.parse().ok(),
        PointIdOptions::Num(_) => None,
    }
}

fn json_map(
    payload: HashMap<String, qdrant_client::qdrant::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    payload
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::from(v)))
        .collect()
}

impl ServerIndex {
    /// Connects to the server at `url` and opens (creating if needed) the collection for `spec`.
    pub async fn open(url: &str, spec: &IndexSpec) -> Result<Self> {
        let client = Qdrant::from_url(url)
            .skip_compatibility_check()
            .build()
            .map_err(|e| backend(format!("cannot use QDRANT_URL={url}: {e}")))?;
        let collection = format!("wasit_kb_{}", spec.signature());
        let exists = client
            .collection_exists(&collection)
            .await
            .map_err(|e| backend(format!("cannot reach the Qdrant server at {url}: {e}")))?;
        if !exists {
            let mut sparse = SparseVectorsConfigBuilder::default();
            sparse.add_named_vector_params(
                SPARSE,
                SparseVectorParamsBuilder::default().modifier(Modifier::Idf),
            );
            let mut create =
                CreateCollectionBuilder::new(&collection).sparse_vectors_config(sparse);
            if let Some((_, dims)) = &spec.dense {
                let mut dense = VectorsConfigBuilder::default();
                dense.add_named_vector_params(
                    DENSE,
                    VectorParamsBuilder::new(*dims as u64, Distance::Cosine),
                );
                create = create.vectors_config(dense);
            }
            client.create_collection(create).await.map_err(backend)?;
            for field in ["tenant_id", "article_id"] {
                client
                    .create_field_index(
                        CreateFieldIndexCollectionBuilder::new(
                            &collection,
                            field,
                            FieldType::Keyword,
                        )
                        .wait(true),
                    )
                    .await
                    .map_err(backend)?;
            }
        }
        Ok(Self {
            name: format!("qdrant:{url}/{collection}"),
            collection,
            created: !exists,
            client,
        })
    }

    async fn delete(&self, filter: Filter) -> Result<()> {
        self.client
            .delete_points(
                DeletePointsBuilder::new(&self.collection)
                    .points(filter)
                    .wait(true),
            )
            .await
            .map_err(backend)?;
        Ok(())
    }
}

impl VectorIndex for ServerIndex {
    fn name(&self) -> &str {
        &self.name
    }

    fn created(&self) -> bool {
        self.created
    }

    fn upsert(&self, points: Vec<IndexPoint>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if points.is_empty() {
                return Ok(());
            }
            let points: Vec<PointStruct> = points
                .into_iter()
                .map(|p| {
                    let mut vectors = NamedVectors::default().add_vector(
                        SPARSE,
                        Vector::new_sparse(p.sparse.indices, p.sparse.values),
                    );
                    if let Some(dense) = p.dense {
                        vectors = vectors.add_vector(DENSE, Vector::new_dense(dense));
                    }
                    PointStruct::new(p.id.to_string(), vectors, payload_json(&p.payload))
                })
                .collect();
            self.client
                .upsert_points(UpsertPointsBuilder::new(&self.collection, points).wait(true))
                .await
                .map_err(backend)?;
            Ok(())
        })
    }

    fn delete_articles(&self, articles: Vec<Uuid>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if articles.is_empty() {
                return Ok(());
            }
            self.delete(any_of("article_id", &articles)).await
        })
    }

    fn clear(&self) -> BoxFuture<'_, Result<()>> {
        // An empty filter matches every point.
        Box::pin(self.delete(Filter::default()))
    }

    fn flush(&self) -> BoxFuture<'_, Result<()>> {
        // Every write waited for the server's acknowledgement (`wait`), which follows its WAL.
        Box::pin(async { Ok(()) })
    }

    fn optimize(&self) -> BoxFuture<'_, Result<()>> {
        // The server optimises in the background.
        Box::pin(async { Ok(()) })
    }

    fn search(&self, query: IndexQuery) -> BoxFuture<'_, Result<Vec<IndexHit>>> {
        Box::pin(async move {
            if query.tenants.is_empty() || query.limit == 0 {
                return Ok(Vec::new());
            }
            let filter = any_of("tenant_id", &query.tenants);
            let candidates = query.candidates() as u64;
            let sparse = VectorInput::new_sparse(query.sparse.indices, query.sparse.values);
            let mut request = QueryPointsBuilder::new(&self.collection)
                .filter(filter.clone())
                .limit(query.limit as u64)
                .with_payload(true);
            request = match query.dense {
                None => request.query(Query::new_nearest(sparse)).using(SPARSE),
                Some(dense) => request
                    .add_prefetch(
                        PrefetchQueryBuilder::default()
                            .query(Query::new_nearest(sparse))
                            .using(SPARSE)
                            .filter(filter.clone())
                            .limit(candidates),
                    )
                    .add_prefetch(
                        PrefetchQueryBuilder::default()
                            .query(Query::new_nearest(VectorInput::new_dense(dense)))
                            .using(DENSE)
                            .filter(filter)
                            .limit(candidates),
                    )
                    .query(Query::new_fusion(Fusion::Rrf)),
            };
            let response = self.client.query(request).await.map_err(backend)?;
            response
                .result
                .into_iter()
                .filter(|p| p.score > 0.0)
                .map(|p| {
                    let chunk_id = point_uuid(p.id)
                        .ok_or_else(|| backend("a point without a uuid id in the collection"))?;
                    Ok(IndexHit {
                        chunk_id,
                        score: p.score,
                        payload: payload_from(json_map(p.payload))?,
                    })
                })
                .collect()
        })
    }

    fn points(&self) -> BoxFuture<'_, Result<Vec<(Uuid, Uuid)>>> {
        Box::pin(async move {
            let mut out = Vec::new();
            let mut offset: Option<PointId> = None;
            loop {
                let mut request = ScrollPointsBuilder::new(&self.collection)
                    .limit(1000)
                    .with_payload(true)
                    .with_vectors(false);
                if let Some(offset) = offset.take() {
                    request = request.offset(offset);
                }
                let page = self.client.scroll(request).await.map_err(backend)?;
                for point in page.result {
                    let article = point
                        .payload
                        .get("article_id")
                        .and_then(|v| {
                            serde_json::Value::from(v.clone())
                                .as_str()
                                .map(str::to_owned)
                        })
                        .and_then(|s| s.parse::<Uuid>().ok());
                    if let (Some(id), Some(article)) = (point_uuid(point.id), article) {
                        out.push((id, article));
                    }
                }
                match page.next_page_offset {
                    Some(next) => offset = Some(next),
                    None => return Ok(out),
                }
            }
        })
    }
}
