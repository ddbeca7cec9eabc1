//! The knowledge base: ingestion, Arabic-aware chunking and normalisation, embeddings, and hybrid
//! retrieval on Qdrant (embedded `qdrant-edge` by default, a Qdrant server with `QDRANT_URL`).
//!
//! Code map:
//! - [`normalize`]: Arabic normalisation for matching (diacritics, alef/ya/ta-marbuta forms,
//!   tatweel, Eastern Arabic digits).
//! - `article`, `chunk`, `embed`, `index`, `search`: to come with the knowledge-base issue.
//!
//! Architecture invariant: `knowledge-base` depends on `runtime` only.

pub mod normalize;
