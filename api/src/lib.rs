//! The Wasit server: HTTP API, webhooks, and the `wasit` command line.
//!
//! Code map:
//! - [`cli`]: the `wasit` command line (clap), one function per command; [`kb_cli`]: `wasit kb`;
//!   [`chat`]: `wasit chat`, talking to the agents in the terminal through the runtime's turn.
//! - [`actions`]: [`actions::CrmActions`], the action handler: agents' tool calls applied to the CRM
//!   inside the turn's transaction.
//! - [`app`]: [`app::AppState`], the router, graceful shutdown.
//! - [`routes`]: handlers, one module per resource (`health`, `login`, `users`, `leads`,
//!   `webhooks`).
//! - [`openapi`]: [`openapi::CATALOG`], every `/api/v1` route with its roles and schemas, and the
//!   OpenAPI 3.1 document (`GET /openapi.json`, browsable at `GET /docs`) made from it.
//! - [`auth`]: JWTs (HS256, pinned), [`auth::Role`], the [`auth::AuthUser`] extractor, passwords.
//! - [`repo`]: SQL for the API's tables (tenants, users, channels, leads, the audit log);
//!   functions take a tenant transaction.
//! - [`error`]: [`error::ApiError`], the JSON error body and its status codes.
//! - [`wiring`]: the composition root: the conversation runtime assembled from settings (agents,
//!   prompts, LLM client, channel senders).
//! - [`testkit`]: local stand-ins for the Meta Graph API and an OpenAI-compatible LLM, for tests
//!   and load tools.
//! - [`extract`]: [`extract::ApiJson`], [`extract::ApiQuery`]: extractors whose rejections are `ApiError`s.
//!
//! Architecture invariant: `api` is the only crate that serves HTTP or has a `main`; it may depend on
//! every other Wasit crate, and none depends on it.

// The OpenAPI document's schema literals (`openapi::components`) nest deeply in `serde_json::json!`.
#![recursion_limit = "512"]

pub mod actions;
pub mod app;
pub mod auth;
pub mod chat;
pub mod cli;
pub mod error;
pub mod extract;
pub mod kb_cli;
pub mod openapi;
pub mod repo;
pub mod routes;
pub mod testkit;
pub mod wiring;
