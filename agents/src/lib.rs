//! The eighteen agent kinds, their tools and the agent router.
//!
//! Code map (filled in as the agents arrive; see `docs/AGENTS.md` and `shared/design/agents.md`):
//! - `kind`: the `AgentKind` enum, one variant per agent, with its prompt file name.
//! - `tools`: typed actions with JSON schemas; the tenant and contact come from the conversation
//!   actor, never from model output.
//! - `router`: picks the active agent for a turn.
//! - `prompt`: loads and validates `prompts/<kind>.md` (TOML front matter + minijinja template).
//!
//! Architecture invariant: `agents` depends on `runtime` and `knowledge-base` only. It never runs
//! SQL for the CRM: it emits typed actions that the action handler applies inside the turn's
//! transaction.
//!
//! Nothing is implemented yet: this crate is the empty room the agents issue moves into.
