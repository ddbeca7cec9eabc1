//! The eighteen agent kinds, their tools and the agent router.
//!
//! Code map (see `docs/AGENTS.md` and `shared/design/agents.md`):
//! - [`prompt`]: loads and validates `prompts/<kind>.md` and per-tenant overrides (TOML front
//!   matter + minijinja template); a file's version is the hash of its bytes.
//! - [`llm_agent`]: [`llm_agent::LlmAgent`], the prompt-driven LLM agent (a
//!   `runtime::turn::TurnEngine`): renders the prompt, runs the bounded tool loop, returns the
//!   reply and typed actions.
//! - [`catalog`]: the eighteen agent kinds of the design and the tools each may call.
//! - [`check`]: `wasit prompts check`: every prompt file validated, `file:line: message`.
//! - [`tools`]: every tool's JSON schema, and [`tools::validate`], which checks each call in code.
//! - [`router`]: the agent router: which agent answers each turn (the tenant and contact come
//!   from the conversation actor, never from model output).
//!
//! Architecture invariant: `agents` depends on `runtime` and `knowledge-base` only. It never runs
//! SQL for the CRM: it emits typed actions that the action handler applies inside the turn's
//! transaction.

pub mod catalog;
pub mod check;
pub mod llm_agent;
pub mod prompt;
pub mod router;
pub mod tools;
