//! The core of Wasit: types every other crate shares and the machinery the actor runtime stands on.
//!
//! Code map:
//! - [`ids`]: identifier newtypes (`TenantId`, `UserId`, …) and parsed domain strings
//!   (`TenantSlug`, `Email`). Parse, don't validate: a value of these types is always well formed.
//! - [`settings`]: the one typed [`Settings`] read from the environment in `main`; secrets are
//!   `SecretString` and never printed.
//! - [`actions`]: the [`actions::ActionHandler`] trait through which agents' tool calls change the
//!   CRM, once per idempotency key, inside the turn's transaction.
//! - [`actors`]: the supervised actor tree (ractor): conversation actors keyed by (tenant,
//!   contact), agent pools, the outbox dispatcher, and the [`actors::Runtime`] handle.
//! - [`db`]: PostgreSQL. Two pools (the migration/owner pool and the application pool, which runs
//!   as the unprivileged `wasit_app` role), the embedded cluster used when `DATABASE_URL` is unset,
//!   migrations, and [`db::begin_tenant`], the single way to open a tenant-scoped transaction.
//! - [`inbox`]: channel-neutral inbound messages and delivery statuses, and [`inbox::store`], which
//!   makes them durable (contact identity and merge, conversation, deduplicated message row)
//!   before a webhook is acknowledged.
//! - [`llm`]: the chat-completions client for any OpenAI-compatible endpoint (async-openai), with
//!   timeouts and no hidden retries.
//! - [`http`]: the one way to build an outbound HTTP client (timeouts, TLS provider).
//! - [`secrets`]: secrets generated once into the data directory (the JWT signing key).
//! - [`outbox`]: leased, retried, at-least-once sending of committed outbox rows through each
//!   channel's [`outbox::ChannelSender`].
//! - [`turn`]: a turn's input (loaded from PostgreSQL), the [`turn::TurnEngine`] trait agents
//!   implement, and [`turn::apply`], which commits a turn's whole outcome in one transaction.
//! - [`error`]: the runtime layer's error type.
//!
//! Architecture invariant: this crate depends on no other Wasit crate. Everything else depends on it.

pub mod actions;
pub mod actors;
pub mod bench;
pub mod db;
pub mod error;
pub mod events;
pub mod front_matter;
pub mod http;
pub mod ids;
pub mod inbox;
pub mod llm;
pub mod outbox;
pub mod secrets;
pub mod settings;
pub mod turn;

pub use error::{Error, Result};
pub use ids::{ContactId, ConversationId, Email, LeadId, MessageId, TenantId, TenantSlug, UserId};
pub use settings::Settings;
