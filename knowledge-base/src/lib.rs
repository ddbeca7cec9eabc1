//! The knowledge base: ingestion, Arabic-aware chunking and normalisation, embeddings, and hybrid
//! retrieval on Qdrant (embedded `qdrant-edge` by default, a Qdrant server with `QDRANT_URL`).
//!
//! Code map (filled in as the knowledge-base issue lands):
//! - `article`: Markdown articles with `+++` TOML front matter (`title`, `language`, `tags`, `sector`).
//! - `normalize`: Arabic normalisation (diacritics, alef/ya/ta-marbuta forms, tatweel, digits).
//! - `chunk`, `embed`, `index`, `search`.
//!
//! Architecture invariant: `knowledge-base` depends on `runtime` only.
//!
//! Nothing is implemented yet: this crate is the empty room the knowledge-base issue moves into.
