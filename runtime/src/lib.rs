//! The core of Wasit: types every other crate shares and the machinery the actor runtime stands on.
//!
//! Code map:
//! - [`domain`]: the shared vocabulary — [`Channel`], [`MessageKind`], [`DeliveryStatus`], the
//!   eighteen [`AgentKind`]s, and [`Money`] (integer minor units in a [`Currency`], parsed exactly,
//!   never a float). Typed everywhere, stored as their `snake_case` names.
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
//! - [`llm`]: the [`llm::ChatModel`] trait, the client for any OpenAI-compatible endpoint
//!   (async-openai: retries, circuit breaker, streaming), token counting and the context fit, and
//!   the tool-call grammar; the embedded model implements the trait in the `local-model` crate.
//! - [`http`]: the one way to build an outbound HTTP client (timeouts, TLS provider).
//! - [`secrets`]: secrets generated once into the data directory (the JWT signing key).
//! - [`outbox`]: leased, retried, at-least-once sending of committed outbox rows through each
//!   channel's [`outbox::ChannelSender`].
//! - [`turn`]: a turn's contract (input, outcome, the [`turn::TurnEngine`] and [`turn::Router`]
//!   traits agents implement) and its stages, one module each: `policy` (decisions without I/O),
//!   `load` ([`turn::load_input`]), `commit` ([`turn::apply`], one transaction, and the pure
//!   `plan_outbound`), `record` (the audit, usage and prompt version of every turn, one SQL
//!   function) and `dead_letter`.
//! - [`events`]: CRM events for the background agents — due, claimed, loaded, committed.
//! - [`front_matter`]: `+++` TOML front matter (prompt files, articles) with line numbers.
//! - [`bench`]: fixtures for benchmarks and tests (a sample turn input, peak memory).
//! - [`error`]: the runtime layer's error type.
//!
//! Architecture invariant: this crate depends on no other Wasit crate. Everything else depends on it.

pub mod actions;
pub mod actors;
pub mod bench;
pub mod db;
pub mod domain;
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

pub use domain::{AgentKind, Channel, Currency, DeliveryStatus, MessageKind, Money};
pub use error::{Error, Result};
pub use ids::{
    ChannelAccountId, ContactId, ConversationId, DealId, Email, EventId, LeadId, MessageId,
    TenantId, TenantSlug, UserId,
};
pub use settings::Settings;
