//! The knowledge base: ingestion, Arabic-aware chunking and normalisation, embeddings, and hybrid
//! retrieval on Qdrant (embedded `qdrant-edge` by default, a Qdrant server with `QDRANT_URL`).
//!
//! Code map:
//! - [`normalize`]: Arabic-first text handling for matching: normalisation (NFKC, diacritics,
//!   tatweel, alef/ya/ta-marbuta forms, digits, bidi marks), terms with the و/ب/ال prefixes taken
//!   off, and language detection (Arabic, English, mixed).
//! - [`article`]: article files (`+++` TOML front matter: title, language, tags, sector) and
//!   their content hash.
//! - [`bm25`]: the per-language analysers (Arabic and English stop lists, prefixes, plurals)
//!   and BM25 sparse vectors for an index that applies IDF.
//! - [`chunk`]: Markdown bodies into chunks by headings, paragraphs and sentences, within a token
//!   budget, with overlap and the heading path of each chunk.
//! - [`embed`]: dense embeddings behind one trait (an OpenAI-compatible `/embeddings`).
//! - [`index`]: the vector index behind one trait: embedded `qdrant-edge` (default) or a Qdrant
//!   server, filtered by tenant in both.
//! - [`service`]: [`KnowledgeBase`]: articles into PostgreSQL (the source of truth), the index
//!   synchronised from there, crash-safe; hybrid search with reciprocal-rank fusion.
//!
//! Architecture invariant: `knowledge-base` depends on `runtime` only.

pub mod article;
pub mod bm25;
pub mod chunk;
pub mod embed;
pub mod index;
pub mod normalize;
pub mod service;

pub use service::{GLOBAL_TENANT, KnowledgeBase, SearchHit};
