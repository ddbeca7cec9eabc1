//! A Qdrant server, through `qdrant-client` (gRPC), when `QDRANT_URL` is set. One collection per
//! index shape (`wasit_kb_<signature>`), with keyword indexes on the tenant and article fields.
//! Writes wait for the server to apply them, so `flush` has nothing left to do.

use std::collections::HashMap;

use qdrant_client::Qdrant;
use qdrant_client::qdrant::{
    Condition, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder, DeletePointsBuilder,
    Distance, FieldType, Filter, GetPointsBuilder, Modifier, NamedVectors, PayloadIncludeSelector,
    PointId, PointStruct, PointsIdsList, PrefetchQueryBuilder, Query, QueryPoints,
    QueryPointsBuilder, RrfBuilder, ScrollPointsBuilder, SparseVectorParamsBuilder,
    SparseVectorsConfigBuilder, UpsertPointsBuilder, Vector, VectorInput, VectorParamsBuilder,
    VectorsConfigBuilder, point_id::PointIdOptions,
};
use uuid::Uuid;

use super::{
    BoxFuture, DENSE, IndexError, IndexHit, IndexPoint, IndexQuery, IndexSpec, Result, SPARSE,
    VectorIndex, payload_from, payload_json,
};

/// Reciprocal-rank fusion's constant, as the embedded index uses it.
const RRF_K: u32 = 60;

/// The point that records the collection's generation (no tenant: never found by a search).
const GENERATION_POINT: Uuid = Uuid::from_u128(0x7761_7369_745f_6765_6e65_7261_7469_6f6e);

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
            // Named by its collection: the same server reached by another address is the same
            // index (and another server's collection of that name is found out by its
            // generation record).
            name: format!("qdrant:{collection}"),
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

/// The server request for `query`: BM25 alone, or BM25 and dense prefetches fused by reciprocal
/// rank, with the tenant filter on every search. `None` when nothing can match.
fn query_request(collection: &str, query: IndexQuery) -> Option<QueryPoints> {
    if query.tenants.is_empty() || query.limit == 0 {
        return None;
    }
    let filter = any_of("tenant_id", &query.tenants);
    let candidates = query.candidates() as u64;
    let sparse = VectorInput::new_sparse(query.sparse.indices, query.sparse.values);
    let request = QueryPointsBuilder::new(collection)
        .filter(filter.clone())
        .limit(query.limit as u64)
        .with_payload(true);
    let request = match query.dense {
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
            .query(Query::new_rrf(RrfBuilder::with_k(RRF_K))),
    };
    Some(request.build())
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
            let Some(request) = query_request(&self.collection, query) else {
                return Ok(Vec::new());
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

    fn points(&self) -> BoxFuture<'_, Result<Vec<(Uuid, Uuid, Uuid)>>> {
        Box::pin(async move {
            let mut out = Vec::new();
            let mut offset: Option<PointId> = None;
            loop {
                let mut request = ScrollPointsBuilder::new(&self.collection)
                    .limit(1000)
                    .with_payload(PayloadIncludeSelector::new(vec![
                        "article_id".to_owned(),
                        "tenant_id".to_owned(),
                    ]))
                    .with_vectors(false);
                if let Some(offset) = offset.take() {
                    request = request.offset(offset);
                }
                let page = self.client.scroll(request).await.map_err(backend)?;
                for point in page.result {
                    let field = |name: &str| {
                        point
                            .payload
                            .get(name)
                            .and_then(|v| v.as_str().and_then(|s| s.parse::<Uuid>().ok()))
                            .unwrap_or_default()
                    };
                    let (article, tenant) = (field("article_id"), field("tenant_id"));
                    match point_uuid(point.id) {
                        Some(id) if id != GENERATION_POINT => out.push((id, article, tenant)),
                        _ => {}
                    }
                }
                match page.next_page_offset {
                    Some(next) => offset = Some(next),
                    None => return Ok(out),
                }
            }
        })
    }

    fn generation(&self) -> BoxFuture<'_, Result<Option<Uuid>>> {
        Box::pin(async move {
            let id: PointId = GENERATION_POINT.to_string().into();
            let got = self
                .client
                .get_points(
                    GetPointsBuilder::new(&self.collection, vec![id])
                        .with_payload(true)
                        .with_vectors(false),
                )
                .await
                .map_err(backend)?;
            Ok(got
                .result
                .first()
                .and_then(|p| p.payload.get("generation"))
                .and_then(|v| v.as_str().and_then(|s| s.parse().ok())))
        })
    }

    fn set_generation(&self, generation: Option<Uuid>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let id: PointId = GENERATION_POINT.to_string().into();
            match generation {
                None => {
                    self.client
                        .delete_points(
                            DeletePointsBuilder::new(&self.collection)
                                .points(PointsIdsList { ids: vec![id] })
                                .wait(true),
                        )
                        .await
                        .map_err(backend)?;
                }
                Some(g) => {
                    let empty = Vector::new_sparse(Vec::<u32>::new(), Vec::<f32>::new());
                    let vectors = NamedVectors::default().add_vector(SPARSE, empty);
                    let mut payload = serde_json::Map::new();
                    payload.insert("generation".into(), g.to_string().into());
                    let point = PointStruct::new(id, vectors, payload);
                    self.client
                        .upsert_points(
                            UpsertPointsBuilder::new(&self.collection, vec![point]).wait(true),
                        )
                        .await
                        .map_err(backend)?;
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use qdrant_client::qdrant::condition::ConditionOneOf;
    use qdrant_client::qdrant::r#match::MatchValue;

    use super::*;
    use crate::bm25;

    /// The tenants a filter lets through, if it is exactly our tenant filter.
    fn tenants_of(filter: Option<&Filter>) -> Vec<String> {
        let filter = filter.expect("a filter");
        assert!(filter.should.is_empty() && filter.must_not.is_empty());
        let [condition] = filter.must.as_slice() else {
            panic!("one condition: {filter:?}");
        };
        let Some(ConditionOneOf::Field(field)) = &condition.condition_one_of else {
            panic!("a field condition: {condition:?}");
        };
        assert_eq!(field.key, "tenant_id");
        match field.r#match.as_ref().and_then(|m| m.match_value.as_ref()) {
            Some(MatchValue::Keywords(k)) => k.strings.clone(),
            other => panic!("a keyword match: {other:?}"),
        }
    }

    /// Without a server at hand, the request the server would get: every search in it (the
    /// root and each prefetch of a hybrid query) is filtered to exactly the query's tenants.
    #[test]
    fn every_search_sent_to_the_server_is_filtered_to_the_tenants() {
        let tenants = vec![Uuid::new_v4(), Uuid::new_v4()];
        let names: Vec<String> = tenants.iter().map(Uuid::to_string).collect();
        let query = |dense: Option<Vec<f32>>| IndexQuery {
            tenants: tenants.clone(),
            sparse: bm25::query_vector("ضمان الذهب"),
            dense,
            limit: 8,
        };
        let sparse = query_request("c", query(None)).unwrap();
        assert_eq!(tenants_of(sparse.filter.as_ref()), names);
        assert!(sparse.prefetch.is_empty());
        assert_eq!(sparse.using.as_deref(), Some(SPARSE));

        let hybrid = query_request("c", query(Some(vec![0.5; 4]))).unwrap();
        assert_eq!(tenants_of(hybrid.filter.as_ref()), names);
        assert_eq!(hybrid.prefetch.len(), 2);
        for prefetch in &hybrid.prefetch {
            assert_eq!(tenants_of(prefetch.filter.as_ref()), names);
            assert_eq!(prefetch.limit, Some(32));
        }
        let mut usings: Vec<_> = hybrid.prefetch.iter().map(|p| p.using.clone()).collect();
        usings.sort();
        assert_eq!(usings, [Some(SPARSE.to_owned()), Some(DENSE.to_owned())]);

        let none = IndexQuery {
            tenants: Vec::new(),
            ..query(None)
        };
        assert!(
            query_request("c", none).is_none(),
            "no tenants: no request, never all"
        );
    }
}
