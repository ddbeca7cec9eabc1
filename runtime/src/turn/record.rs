//! The record of a turn — its audit row, the model usage it adds to the tenant's day and the
//! version of the prompt file it ran — written the same way for a conversation's turn
//! ([`super::commit::apply`]) and a background agent's turn on a CRM event
//! ([`crate::events::apply`]): by the SQL function `wasit_record_turn` (migration `record_turn`),
//! always called with its arguments first, `$1` to `$15`, so one function binds them for both.

use serde_json::Value;
use sqlx::Arguments;
use sqlx::postgres::PgArguments;

use super::TurnAudit;
use crate::error::{Error, Result};
use crate::ids::ConversationId;

/// The call, over the statement's first fifteen parameters ([`arguments`]).
pub(crate) const CALL: &str =
    "wasit_record_turn($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";

/// What a turn is recorded against: a conversation's numbered turn, or a CRM event.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Subject {
    Conversation(ConversationId, i64),
    Event(crate::ids::EventId),
}

/// The parameters of [`CALL`], in order; the caller adds its own after them (`$16` on).
pub(crate) fn arguments(
    subject: Subject,
    audit: &TurnAudit,
    outcome: Value,
) -> Result<PgArguments> {
    let (conversation, event, turn_seq) = match subject {
        Subject::Conversation(id, seq) => (Some(id), None, seq),
        Subject::Event(id) => (None, Some(id), 0),
    };
    let saturate = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    let mut args = PgArguments::default();
    let add = |result: std::result::Result<(), sqlx::error::BoxDynError>| {
        result.map_err(|e| Error::Database(sqlx::Error::Encode(e)))
    };
    add(args.add(conversation))?;
    add(args.add(event))?;
    add(args.add(turn_seq))?;
    add(args.add(audit.agent))?;
    add(args.add(audit.prompt_version.clone()))?;
    add(args.add(audit.model.clone()))?;
    add(args.add(saturate(audit.tokens_in)))?;
    add(args.add(saturate(audit.tokens_out)))?;
    add(args.add(saturate(audit.latency_ms)))?;
    add(args.add(audit.tool_calls.clone()))?;
    add(args.add(outcome))?;
    add(args.add(i64::from(audit.calls)))?;
    add(args.add(audit.cost_micros))?;
    add(args.add(audit.prompt_path.clone()))?;
    add(args.add(audit.prompt_body.clone()))?;
    Ok(args)
}
