//! Committing a turn: [`apply`] writes its whole outcome in one transaction, and
//! [`plan_outbound`] decides, without I/O, what the turn sends.

use serde_json::{Value, json};
use sqlx::PgPool;

use super::{TurnAction, TurnInput, TurnOutcome, record};
use crate::actions::{ActionContext, ActionError, ActionHandler, ToolAction};
use crate::db::begin_tenant;
use crate::domain::Channel;
use crate::error::{Error, Result};
use crate::ids::MessageId;
use crate::outbox::{ChannelAccount, Claimed};

/// What [`apply`] committed.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub turn_seq: i64,
    pub outbound: usize,
    /// The reply was not sent because a human owns the conversation (or it was escalated).
    pub suppressed: bool,
    /// Outbox rows committed claimed by the caller, to send now ([`crate::outbox::send_claimed`]).
    pub claimed: Vec<Claimed>,
    /// Outbox rows committed for the sweeps (something earlier of the conversation is pending).
    pub queued: bool,
}

/// Splits a reply for a channel's length limit, in characters.
pub type Splitter = fn(&str) -> Vec<String>;

/// Commits a turn's outcome in one transaction. `answered` are the inbound messages the turn
/// saw; only they are marked processed, so anything that arrived since gets a turn of its own.
///
/// With `claim` (a lease), the outbox rows are committed claimed by the caller for that long when
/// nothing earlier of the conversation waits to be sent, and returned in [`Applied::claimed`]:
/// the caller sends them at once. If it dies first, the sweeps send them when the lease ends.
pub async fn apply(
    pool: &PgPool,
    input: &TurnInput,
    outcome: &TurnOutcome,
    split: Splitter,
    claim: Option<std::time::Duration>,
    handler: Option<&dyn ActionHandler>,
) -> Result<Applied> {
    let conversation = input.conversation.ok_or_else(|| {
        Error::Invalid("a turn without a conversation is committed by events::apply".into())
    })?;
    let mut tx = begin_tenant(pool, input.tenant.id).await?;
    let answered: Vec<MessageId> = input.new_messages.iter().map(|m| m.id).collect();
    let progress = !outcome.actions.is_empty();
    // The row lock serialises turns of one conversation even across nodes; the same statement
    // marks the answered messages processed, takes up a pending handoff, and fetches where
    // replies go.
    let row: ApplyRow = sqlx::query_as(
        "WITH conv AS (
             UPDATE conversations v SET turn_seq = v.turn_seq + 1, updated_at = now(),
                 active_agent = $5, handoff_from = NULL, handoff_reason = NULL,
                 handoff_hops = CASE WHEN cardinality($2::uuid[]) > 0 THEN 0 ELSE v.handoff_hops END,
                 turns_without_progress = CASE WHEN $4 THEN 0 ELSE v.turns_without_progress + 1 END
             FROM (SELECT handoff_from FROM conversations
                   WHERE tenant_id = wasit_current_tenant() AND id = $1 FOR UPDATE) old
             WHERE v.tenant_id = wasit_current_tenant() AND v.id = $1
             RETURNING v.turn_seq, v.owner_user_id, v.status, v.channel, v.channel_account_id,
                       v.contact_id, old.handoff_from IS NOT NULL AS handoff_pending),
         marked AS (
             UPDATE messages SET processed_at = now()
             WHERE tenant_id = wasit_current_tenant() AND id = ANY($2) AND processed_at IS NULL
             RETURNING id),
         -- The contact wrote: a follow-up waiting for them is not needed (the turn may schedule
         -- another).
         cancelled AS (
             UPDATE follow_ups SET status = 'cancelled', done_at = now()
             WHERE tenant_id = wasit_current_tenant() AND conversation_id = $1 AND status = 'pending'
               AND cardinality($2::uuid[]) > 0)
         SELECT conv.turn_seq, conv.owner_user_id, conv.status, conv.channel, conv.handoff_pending,
                (SELECT count(*) FROM marked) AS marked,
                (SELECT provider_message_id FROM messages
                  WHERE tenant_id = wasit_current_tenant() AND id = $3) AS reply_to,
                (SELECT i.kind || ':' || i.value FROM contact_identities i
                  WHERE i.tenant_id = wasit_current_tenant() AND i.contact_id = conv.contact_id
                    AND i.kind = ANY(CASE conv.channel WHEN 'whatsapp' THEN ARRAY['phone', 'whatsapp_bsuid']
                                                       WHEN 'sms' THEN ARRAY['phone']
                                                       WHEN 'chat' THEN ARRAY['chat'] ELSE ARRAY['email'] END)
                  ORDER BY array_position(ARRAY['phone', 'whatsapp_bsuid', 'email', 'chat'], i.kind) LIMIT 1) AS identity,
                EXISTS (SELECT 1 FROM outbox o
                  WHERE o.tenant_id = wasit_current_tenant() AND o.conversation_id = $1
                    AND o.state = 'pending') AS earlier_pending,
                a.id AS account_id, a.address AS account_address, a.credentials AS account_credentials
         FROM conv LEFT JOIN LATERAL (
             SELECT id, address, credentials FROM channel_accounts
             WHERE tenant_id = wasit_current_tenant() AND channel = conv.channel
               AND (conv.channel_account_id IS NULL OR id = conv.channel_account_id)
             ORDER BY created_at LIMIT 1) a ON true",
    )
    .bind(conversation)
    .bind(&answered)
    .bind(answered.last())
    .bind(progress)
    .bind(input.agent)
    .fetch_one(&mut *tx)
    .await?;
    let ApplyRow {
        turn_seq,
        owner_user_id: owner,
        status,
        channel,
        handoff_pending,
        marked,
        reply_to,
        identity,
        earlier_pending,
        account_id,
        account_address,
        account_credentials,
    } = row;
    if usize::try_from(marked).ok() != Some(answered.len()) {
        // Another turn (another node, a recovered rerun, an actor of a merged contact) answered
        // some of these already: roll back rather than answer anything twice.
        return Err(Error::Conflict(
            "these messages were answered by another turn".into(),
        ));
    }
    if answered.is_empty() && !handoff_pending {
        // A turn for a handoff that another turn has taken up already.
        return Err(Error::Conflict(
            "the handoff was answered by another turn".into(),
        ));
    }

    // While a human owns the conversation (or it waits for one), no agent sends anything.
    let suppressed = owner.is_some() || status == "escalated";
    let parts = if suppressed {
        Vec::new()
    } else {
        let to = Destination {
            recipient: recipient(identity.as_deref(), channel)?,
            account: account_id,
            reply_to,
        };
        plan_outbound(outcome, conversation, turn_seq, &to, split)
    };
    let ctx = ActionContext {
        channel: Some(channel),
        ..input.action_context()
    };
    let mut call_index = 0;
    for action in &outcome.actions {
        match action {
            TurnAction::Tool(action) => {
                let index = call_index;
                call_index += 1;
                let key = format!("{conversation}:{turn_seq}:{index}");
                apply_tool(&mut tx, handler, ctx, &key, Some(turn_seq), index, action).await?;
            }
            TurnAction::Escalate { reason } => {
                sqlx::query(
                    "UPDATE conversations SET status = 'escalated', needs_human = true, updated_at = now(),
                         escalated_from = coalesce(escalated_from, $2)
                     WHERE tenant_id = wasit_current_tenant() AND id = $1",
                )
                .bind(conversation)
                .bind(input.agent)
                .execute(&mut *tx)
                .await?;
                // The people who can take it over hear about it, in the same transaction.
                sqlx::query("SELECT wasit_notify_escalation($1, $2)")
                    .bind(conversation)
                    .bind(reason)
                    .execute(&mut *tx)
                    .await?;
                tracing::info!(%conversation, reason, "conversation escalated to a human");
            }
            TurnAction::Handoff { to_agent, reason } => {
                // The next agent answers in a turn of its own, seeing why it got the conversation.
                sqlx::query(
                    "UPDATE conversations SET active_agent = $2, handoff_from = $3, handoff_reason = left($4, 2000),
                         handoff_hops = handoff_hops + 1,
                         escalated_from = CASE WHEN $2 = 'escalation' THEN $3 ELSE escalated_from END
                     WHERE tenant_id = wasit_current_tenant() AND id = $1",
                )
                .bind(conversation)
                .bind(to_agent)
                .bind(input.agent)
                .bind(reason)
                .execute(&mut *tx)
                .await?;
            }
            TurnAction::NotifyAdmins {
                key,
                kind,
                title,
                body,
            } => {
                sqlx::query("SELECT wasit_notify_admins_once($1, $2, $3, $4, $5)")
                    .bind(key)
                    .bind(kind)
                    .bind(title)
                    .bind(body)
                    .bind(json!({"conversation_id": conversation}))
                    .execute(&mut *tx)
                    .await?;
            }
            // Sent with the replies (above).
            TurnAction::SendTemplate { .. } => {}
        }
    }
    // The fast path: when nothing earlier of this conversation is waiting to be sent, the rows
    // are committed already claimed by this process, which sends them right after the commit.
    // Otherwise the sweeps send them, in order, after what is waiting.
    let lease = claim.filter(|_| !earlier_pending);
    let outbound = parts.len();
    // The outbound messages, their outbox rows and the turn's record: one statement.
    let record = record::arguments(
        record::Subject::Conversation(conversation, turn_seq),
        &outcome.audit,
        json!({
            "replies": outcome.replies.len(),
            "outbound_messages": outbound,
            "suppressed": suppressed,
            "actions": outcome.actions,
            "answered": answered,
        }),
    )?;
    let (sent,): (sqlx::types::Json<Vec<(uuid::Uuid, i32, MessageId)>>,) = sqlx::query_as_with(
        &format!(
            "WITH part AS (
                 SELECT * FROM unnest($18::uuid[], $19::int[], $20::text[], $21::text[], $22::jsonb[], $23::text[])
                     AS p(message_id, number, key, body, payload, kind)),
             message AS (
                 INSERT INTO messages (id, tenant_id, conversation_id, direction, channel, kind, body, status, processed_at)
                 SELECT p.message_id, wasit_current_tenant(), $16, 'outbound', $24, p.kind, p.body, 'queued', now()
                 FROM part p ORDER BY p.number
                 RETURNING id),
             counted AS (
                 UPDATE messages m SET token_count = c.n, token_encoding = $27
                 FROM unnest($26::uuid[], $28::int[]) AS c(id, n)
                 WHERE m.tenant_id = wasit_current_tenant() AND m.id = c.id),
             summarised AS (
                 UPDATE conversations SET summary = $29, summary_through_seq = $30
                 WHERE tenant_id = wasit_current_tenant() AND id = $16 AND $30::bigint IS NOT NULL),
             outboxed AS (
                 INSERT INTO outbox (tenant_id, message_id, channel, idempotency_key, payload,
                                     conversation_id, turn_seq, part, attempts, next_attempt_at)
                 SELECT wasit_current_tenant(), m.id, $24, p.key, p.payload, $16, $17, p.number,
                        CASE WHEN $25::float8 IS NULL THEN 0 ELSE 1 END,
                        now() + make_interval(secs => coalesce($25::float8, 0))
                 FROM part p JOIN message m ON m.id = p.message_id
                 ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
                 RETURNING id, attempts, message_id)
             -- A function in FROM runs exactly once: the turn is recorded whatever it sends.
             SELECT (SELECT coalesce(jsonb_agg(jsonb_build_array(id, attempts, message_id)), '[]')
                     FROM outboxed) AS sent
             FROM {} AS recorded",
            record::CALL
        ),
        record,
    )
    .bind(conversation)
    .bind(turn_seq)
    .bind(parts.iter().map(|p| p.message.0).collect::<Vec<_>>())
    .bind(parts.iter().map(|p| p.number).collect::<Vec<_>>())
    .bind(parts.iter().map(|p| p.key.as_str()).collect::<Vec<_>>())
    .bind(parts.iter().map(|p| p.body.as_str()).collect::<Vec<_>>())
    .bind(parts.iter().map(|p| &p.payload).collect::<Vec<_>>())
    .bind(parts.iter().map(|p| p.kind).collect::<Vec<_>>())
    .bind(channel)
    .bind(lease.map(|l| l.as_secs_f64()))
    .bind(outcome.token_counts.iter().map(|(id, _)| id.0).collect::<Vec<_>>())
    .bind(&outcome.token_encoding)
    .bind(
        outcome
            .token_counts
            .iter()
            .map(|(_, n)| i32::try_from(*n).unwrap_or(i32::MAX))
            .collect::<Vec<_>>(),
    )
    .bind(outcome.summary.as_ref().map(|s| s.text.as_str()))
    .bind(outcome.summary.as_ref().map(|s| s.through_seq))
    .fetch_one(&mut *tx)
    .await?;
    let inserted = sent.0;
    let queued = lease.is_none() && !inserted.is_empty();
    let mut claimed = Vec::new();
    if lease.is_some() {
        let account = ChannelAccount::from_row(account_id, account_address, account_credentials);
        for part in parts {
            if let Some((id, attempts, _)) = inserted.iter().find(|(.., m)| *m == part.message) {
                claimed.push(Claimed {
                    tenant: input.tenant.id,
                    id: *id,
                    channel,
                    payload: part.payload,
                    attempts: *attempts,
                    message: Some(part.message),
                    key: part.key,
                    account: account.clone(),
                });
            }
        }
    }
    tx.commit().await?;
    Ok(Applied {
        turn_seq,
        outbound,
        suppressed,
        claimed,
        queued,
    })
}

/// Applies one tool action, unless its idempotency key — (conversation, turn, call), or (event,
/// call) — shows it was applied already, and records it in `agent_actions`.
pub(crate) async fn apply_tool(
    tx: &mut crate::db::TenantTx,
    handler: Option<&dyn ActionHandler>,
    ctx: ActionContext,
    key: &str,
    turn_seq: Option<i64>,
    index: i32,
    action: &ToolAction,
) -> Result<()> {
    let handler = handler.ok_or_else(|| {
        Error::Config(format!(
            "the turn asks for {} but the runtime has no action handler",
            action.tool
        ))
    })?;
    let fresh: Option<uuid::Uuid> = sqlx::query_scalar(
        "INSERT INTO agent_actions (tenant_id, conversation_id, turn_seq, call_index, idempotency_key, agent, tool, arguments, event_id)
         VALUES (wasit_current_tenant(), $1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (tenant_id, idempotency_key) DO NOTHING RETURNING id",
    )
    .bind(ctx.conversation)
    .bind(turn_seq)
    .bind(index)
    .bind(key)
    .bind(ctx.agent)
    .bind(&action.tool)
    .bind(&action.arguments)
    .bind(ctx.event)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(id) = fresh else {
        tracing::info!(
            key,
            tool = action.tool,
            "action applied before: not applied again"
        );
        return Ok(());
    };
    let result = match handler.apply(tx, ctx, action).await {
        Ok(result) => result,
        // It passed its rehearsal: the CRM changed since. The turn runs again and the model sees
        // the CRM as it is now.
        Err(ActionError::Refused(reason)) => {
            return Err(Error::Unavailable(format!(
                "{} was refused at commit: {reason}",
                action.tool
            )));
        }
        Err(ActionError::Failed(e)) => return Err(e),
    };
    sqlx::query(
        "UPDATE agent_actions SET result = $2 WHERE tenant_id = wasit_current_tenant() AND id = $1",
    )
    .bind(id)
    .bind(&result)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One outbound message of a turn, before it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundPart {
    pub message: MessageId,
    /// Its place in the turn's outbound messages, from 0.
    pub number: i32,
    /// The outbox idempotency key: `conversation:turn_seq:number`.
    pub key: String,
    /// `text`, or `template`.
    pub kind: &'static str,
    /// The text stored as the message's body.
    pub body: String,
    pub payload: Value,
}

/// Where a turn's messages go.
#[derive(Debug, Clone)]
pub struct Destination {
    /// The channel's address of the contact (see [`recipient`]).
    pub recipient: String,
    /// The tenant's channel account that sends them.
    pub account: Option<uuid::Uuid>,
    /// The provider's id of the last message the turn answers: the first reply quotes it.
    pub reply_to: Option<String>,
}

/// The outbound messages of a turn, in the order they are sent: approved templates first (outside
/// WhatsApp's 24-hour window they are what reopens it), then each reply split for the channel's
/// length limit, blank pieces dropped, the first piece quoting the message it answers. Pure: the
/// same outcome plans the same parts (but for fresh message ids), so a rerun of the turn commits
/// the same idempotency keys.
pub fn plan_outbound(
    outcome: &TurnOutcome,
    conversation: crate::ids::ConversationId,
    turn_seq: i64,
    to: &Destination,
    split: Splitter,
) -> Vec<OutboundPart> {
    let Destination {
        recipient,
        account,
        reply_to,
    } = to;
    let templates = outcome.actions.iter().filter_map(|a| match a {
        TurnAction::SendTemplate {
            template,
            language,
            parameters,
        } => Some((
            "template",
            format!("[{template}] {}", parameters.join(" | ")),
            json!({
                "type": "template",
                "to": recipient,
                "template": {"name": template, "language": language, "parameters": parameters},
                "channel_account_id": account,
            }),
        )),
        _ => None,
    });
    let texts = outcome
        .replies
        .iter()
        .flat_map(|r| split(r))
        .filter(|p| !p.trim().is_empty())
        .enumerate()
        .map(|(i, body)| {
            let payload = json!({
                "type": "text",
                "to": recipient,
                "body": body,
                "channel_account_id": account,
                "reply_to": if i == 0 { reply_to.clone() } else { None },
            });
            ("text", body, payload)
        });
    templates
        .chain(texts)
        .enumerate()
        .map(|(i, (kind, body, payload))| OutboundPart {
            message: MessageId(uuid::Uuid::new_v4()),
            number: i32::try_from(i).unwrap_or(i32::MAX),
            key: format!("{conversation}:{turn_seq}:{i}"),
            kind,
            body,
            payload,
        })
        .collect()
}

#[derive(sqlx::FromRow)]
struct ApplyRow {
    turn_seq: i64,
    owner_user_id: Option<uuid::Uuid>,
    status: String,
    channel: Channel,
    handoff_pending: bool,
    marked: i64,
    reply_to: Option<String>,
    identity: Option<String>,
    earlier_pending: bool,
    account_id: Option<uuid::Uuid>,
    account_address: Option<String>,
    account_credentials: Option<Value>,
}

/// Where replies go, from the contact's best identity for the channel (`kind:value`): for
/// WhatsApp the phone's digits, else the BSUID; for SMS the phone; for email the address; for
/// `wasit chat` the contact's name.
fn recipient(identity: Option<&str>, channel: Channel) -> Result<String> {
    let (kind, value) = identity
        .and_then(|i| i.split_once(':'))
        .ok_or_else(|| Error::Invalid(format!("the contact has no {channel} identity")))?;
    Ok(if kind == "phone" && channel == Channel::Whatsapp {
        value.trim_start_matches('+').to_owned()
    } else {
        value.to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ConversationId;

    fn split_at_ten(text: &str) -> Vec<String> {
        text.chars()
            .collect::<Vec<_>>()
            .chunks(10)
            .map(|c| c.iter().collect())
            .collect()
    }

    const GREETING: &str = "أهلاً وسهلاً بكم";

    fn destination() -> Destination {
        Destination {
            recipient: "966500000001".into(),
            account: Some(uuid::Uuid::nil()),
            reply_to: Some("wamid.IN1".into()),
        }
    }

    #[test]
    fn templates_go_first_then_replies_split_with_only_the_first_piece_quoting() {
        let conversation = ConversationId(uuid::Uuid::nil());
        let outcome = TurnOutcome {
            // Two pieces of at most ten characters; the blank reply is dropped.
            replies: vec![GREETING.into(), "   ".into()],
            actions: vec![TurnAction::SendTemplate {
                template: "follow_up_ar".into(),
                language: "ar".into(),
                parameters: vec!["سارة".into()],
            }],
            ..TurnOutcome::default()
        };
        let parts = plan_outbound(&outcome, conversation, 7, &destination(), split_at_ten);
        let kinds: Vec<_> = parts.iter().map(|p| p.kind).collect();
        assert_eq!(kinds, ["template", "text", "text"]);
        let keys: Vec<_> = parts.iter().map(|p| p.key.as_str()).collect();
        let prefix = format!("{conversation}:7:");
        assert_eq!(
            keys,
            [0, 1, 2]
                .map(|i| format!("{prefix}{i}"))
                .each_ref()
                .map(String::as_str)
        );
        assert_eq!(parts[0].body, "[follow_up_ar] سارة");
        assert_eq!(parts[0].payload["template"]["name"], "follow_up_ar");
        assert_eq!(parts[1].body, split_at_ten(GREETING)[0]);
        assert_eq!(parts[2].body, split_at_ten(GREETING)[1]);
        assert_eq!(parts[1].payload["reply_to"], "wamid.IN1");
        assert!(
            parts[2].payload["reply_to"].is_null(),
            "only the first piece quotes"
        );
        assert!(parts.iter().all(|p| p.payload["to"] == "966500000001"));
    }

    #[test]
    fn the_same_outcome_plans_the_same_keys_and_bodies() {
        let conversation = ConversationId::new();
        let outcome = TurnOutcome {
            replies: vec!["hello".into()],
            ..TurnOutcome::default()
        };
        let plan = || plan_outbound(&outcome, conversation, 3, &destination(), split_at_ten);
        let (a, b) = (plan(), plan());
        let strip = |p: &[OutboundPart]| {
            p.iter()
                .map(|p| (p.key.clone(), p.body.clone(), p.payload.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&a), strip(&b));
        assert!(
            plan_outbound(
                &TurnOutcome::default(),
                conversation,
                3,
                &destination(),
                split_at_ten
            )
            .is_empty()
        );
    }

    #[test]
    fn replies_go_to_the_channels_form_of_the_contacts_identity() {
        assert_eq!(
            recipient(Some("phone:+966500000001"), Channel::Whatsapp).unwrap(),
            "966500000001"
        );
        assert_eq!(
            recipient(Some("phone:+966500000001"), Channel::Sms).unwrap(),
            "+966500000001"
        );
        assert_eq!(
            recipient(Some("email:a@b.co"), Channel::Email).unwrap(),
            "a@b.co"
        );
        assert!(recipient(None, Channel::Whatsapp).is_err());
    }
}
