//! `wasit chat`: a prompt engineer talks to the agents in the terminal, as a contact would.
//!
//! The terminal is a channel like the others (`chat`): each line typed is stored as an inbound
//! message through [`runtime::inbox::store`] (the webhooks' path; the tenant comes from the
//! channel account, whose address is the tenant's slug), answered by the same turn the
//! conversation actors run — [`turn::load_input`], the router, the agent engines of
//! [`crate::wiring::runtime_parts`] with their actions, [`turn::apply`] — and the reply is sent
//! through the outbox ([`runtime::outbox::send_claimed`]) by a sender that prints it. A handoff is
//! answered at once by the next agent, as in the runtime. Prompt files are reloaded while it runs.
//!
//! Unlike `serve`, it starts no sweeps and no recovery: it answers its own conversation only, so
//! it can run beside a server on the same database.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use runtime::inbox::{self, Batch, Channel, ContactIdentity, InboundMessage, MessageKind};
use runtime::outbox::{ChannelAccount, ChannelSender, Dispatch, SendFuture, Senders};
use runtime::turn::{self, Skip, TurnAction, TurnEngine, TurnError};
use runtime::{AgentKind, ConversationId, Settings, TenantId, TenantSlug};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

use crate::cli::{UsageError, usage_if_invalid};
use crate::repo;

/// The contact a chat talks as when `--contact` is not given.
pub const DEFAULT_CONTACT: &str = "prompt-engineer";

#[derive(Debug, clap::Args)]
pub struct ChatArgs {
    /// The tenant's slug: its prompt overlays, knowledge base, CRM and settings are used.
    #[arg(long, value_parser = TenantSlug::parse)]
    pub tenant: TenantSlug,
    /// Have this agent kind answer every message (e.g. `sales`) instead of the router's choice;
    /// handoffs still move the conversation on until your next message.
    #[arg(long)]
    pub agent: Option<String>,
    /// The contact you talk as; the same name continues the same conversation (and CRM record).
    #[arg(long, default_value = DEFAULT_CONTACT)]
    pub contact: String,
}

/// Prints what agents send to the terminal: the outbox's sender for the `chat` channel. Replies
/// are collected, and printed by the turn that produced them (which knows the agent).
#[derive(Default)]
struct TerminalSender {
    sent: Mutex<Vec<String>>,
}

impl TerminalSender {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.sent.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl ChannelSender for TerminalSender {
    fn channel(&self) -> Channel {
        Channel::Chat
    }

    fn send(
        &self,
        _account: ChannelAccount,
        payload: Value,
        idempotency_key: String,
    ) -> SendFuture {
        let body = payload["body"].as_str().unwrap_or_default().to_owned();
        self.sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(body);
        Box::pin(async move { Ok(format!("chat:{idempotency_key}")) })
    }
}

/// One reply as a line of output: `KIND: text`, newlines written as `\n` so that a reply is always
/// one line (a terminal shows them as they are).
pub fn reply_line(agent: &str, text: &str, one_line: bool) -> String {
    if one_line {
        format!(
            "{agent}: {}",
            text.replace("\r\n", "\\n").replace('\n', "\\n")
        )
    } else {
        format!("{agent}: {text}")
    }
}

struct Chat {
    pool: sqlx::PgPool,
    tenant: TenantId,
    slug: TenantSlug,
    contact: String,
    pinned: Option<AgentKind>,
    engines: HashMap<AgentKind, Arc<dyn TurnEngine>>,
    router: Option<Arc<dyn turn::Router>>,
    actions: Option<Arc<dyn runtime::actions::ActionHandler>>,
    lease: std::time::Duration,
    dispatch: Dispatch,
    terminal: Arc<TerminalSender>,
    /// stdin is not a terminal: one reply per line.
    one_line: bool,
}

pub async fn run(settings: &Settings, args: ChatArgs) -> anyhow::Result<()> {
    let pinned = match &args.agent {
        Some(kind) => Some(kind.parse::<AgentKind>().map_err(|e| {
            UsageError(format!(
                "--agent {kind:?} is not an agent kind; one of: {}",
                e.expected
            ))
        })?),
        None => None,
    };
    let contact = args.contact.trim().to_owned();
    if contact.is_empty() || contact.chars().count() > 200 {
        return Err(UsageError("--contact needs a name of 1 to 200 characters".into()).into());
    }
    let db = runtime::db::Database::open(settings)
        .await
        .context("cannot open the database")?;
    let result = async {
        db.migrate().await.context("cannot apply migrations")?;
        let tenant = repo::tenants::require_by_slug(&db.app, &args.tenant)
            .await
            .map_err(usage_if_invalid)?;
        let chat = Chat::start(settings, &db, tenant, args, pinned, contact).await?;
        chat.converse().await
    }
    .await;
    db.close().await;
    result
}

impl Chat {
    async fn start(
        settings: &Settings,
        db: &runtime::db::Database,
        tenant: TenantId,
        args: ChatArgs,
        pinned: Option<AgentKind>,
        contact: String,
    ) -> anyhow::Result<Self> {
        ensure_account(&db.app, tenant, &args.tenant).await?;
        // The knowledge base as `serve` opens it; without it (an index held by a running server,
        // an embedder down) the agents hear that knowledge is unavailable, as they would there.
        let knowledge = match crate::wiring::knowledge(settings, db.app.clone()).await {
            Ok(kb) => Some(Arc::new(kb)),
            Err(e) => {
                eprintln!("warning: the knowledge base is unavailable in this chat: {e:#}");
                None
            }
        };
        let parts = crate::wiring::runtime_parts(settings, db.app.clone(), knowledge).await?;
        let terminal = Arc::new(TerminalSender::default());
        let dispatch = Dispatch::new(
            db.app.clone(),
            Senders::default().with(terminal.clone()),
            parts.config.outbox.clone(),
        );
        Ok(Self {
            pool: db.app.clone(),
            tenant,
            slug: args.tenant,
            contact,
            pinned,
            engines: parts.engines.into_iter().collect(),
            router: parts.router,
            actions: parts.actions,
            lease: parts.config.outbox.lease,
            dispatch,
            terminal,
            one_line: !std::io::stdin().is_terminal(),
        })
    }

    /// Reads messages until the end of input, answering each before reading the next.
    async fn converse(&self) -> anyhow::Result<()> {
        if !self.one_line {
            let agent = self.pinned.map_or("the router's choice", AgentKind::as_str);
            eprintln!(
                "talking to {} as {:?} (agent: {agent}); one message per line, Ctrl-D to end",
                self.slug, self.contact
            );
            if let Some(spec) = self.pinned.map(agents::catalog::spec)
                && spec.background
            {
                eprintln!(
                    "note: {} is a background agent: it never messages a contact; its actions show below",
                    spec.kind
                );
            }
        }
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        loop {
            if !self.one_line {
                eprint!("> ");
                let _ = std::io::stderr().flush();
            }
            let Some(line) = lines.next_line().await.context("cannot read stdin")? else {
                break;
            };
            if line.trim().is_empty() {
                continue;
            }
            let conversation = self.receive(&line).await?;
            self.answer(conversation).await?;
        }
        Ok(())
    }

    /// Stores one typed line as the contact's message, as a webhook would.
    async fn receive(&self, text: &str) -> anyhow::Result<ConversationId> {
        let message = InboundMessage {
            provider_message_id: format!("chat-{}", uuid::Uuid::new_v4()),
            from: ContactIdentity {
                chat: Some(self.contact.clone()),
                display_name: Some(self.contact.clone()),
                ..ContactIdentity::default()
            },
            kind: MessageKind::Text,
            body: Some(text.to_owned()),
            payload: json!({ "text": text }),
            provider_timestamp: Some(time::OffsetDateTime::now_utc()),
            triggers_turn: true,
        };
        let batch = Batch {
            channel: Channel::Chat,
            address: self.slug.to_string(),
            messages: vec![message],
            statuses: Vec::new(),
            raw: json!({}),
        };
        let stored = inbox::store(&self.pool, vec![batch], Vec::new())
            .await
            .context("cannot store the message")?;
        stored
            .accepted
            .first()
            .map(|a| a.conversation)
            .context("the message was not stored")
    }

    /// Runs the conversation's turns until no agent has anything more to say: the answer to the
    /// message, then one turn per agent a handoff passes it to.
    async fn answer(&self, conversation: ConversationId) -> anyhow::Result<()> {
        loop {
            let mut input = match turn::load_input(&self.pool, self.tenant, conversation).await? {
                Ok(input) => input,
                Err(Skip::NothingNew) => return Ok(()),
                Err(Skip::HumanOwns) => {
                    eprintln!(
                        "(a rep has this conversation: no agent answers until it is handed back)"
                    );
                    return Ok(());
                }
            };
            if input.has_new_messages() {
                match (&self.pinned, &self.router) {
                    (Some(kind), _) => input.agent = *kind,
                    (None, Some(router)) => turn::route(router.as_ref(), &mut input),
                    (None, None) => {}
                }
            }
            let agent = input.agent;
            let engine = self
                .engines
                .get(&agent)
                .with_context(|| format!("no {agent} agent is running"))?;
            let outcome = match engine.run(input.clone()).await {
                Ok(outcome) => outcome,
                Err(TurnError::NotReady(reason)) => anyhow::bail!("{reason}"),
                Err(e) => {
                    eprintln!(
                        "error: the {agent} agent could not answer ({e}); your message is kept and answered with the next one"
                    );
                    return Ok(());
                }
            };
            let applied = match turn::apply(
                &self.pool,
                &input,
                &outcome,
                |text| vec![text.to_owned()],
                Some(self.lease),
                self.actions.as_deref(),
            )
            .await
            {
                Ok(applied) => applied,
                Err(runtime::Error::Conflict(_)) => return Ok(()),
                Err(e) => return Err(e).context("cannot commit the turn"),
            };
            runtime::outbox::send_claimed(&self.dispatch, applied.claimed)
                .await
                .context("cannot record the reply as sent")?;
            self.show(agent.as_str(), &outcome.actions);
            if !turn::answers_at_once(&input, &outcome) {
                return Ok(());
            }
        }
    }

    /// Prints what the agent sent (stdout) and did (stderr).
    fn show(&self, agent: &str, actions: &[TurnAction]) {
        for action in actions {
            match action {
                TurnAction::Tool(call) => {
                    eprintln!("  · {agent} called {} {}", call.tool, call.arguments);
                }
                TurnAction::Handoff { to_agent, reason } => {
                    eprintln!("  · {agent} handed the conversation to {to_agent}: {reason}");
                }
                TurnAction::Escalate { reason } => {
                    eprintln!("  · {agent} escalated to a human: {reason}");
                }
                TurnAction::NotifyAdmins { title, .. } => {
                    eprintln!("  · the tenant's admins were told: {title}");
                }
                TurnAction::SendTemplate { template, .. } => {
                    eprintln!("  · {agent} sent the WhatsApp template {template}");
                }
            }
        }
        let mut out = std::io::stdout().lock();
        for text in self.terminal.take() {
            let _ = writeln!(out, "{}", reply_line(agent, &text, self.one_line));
        }
        let _ = out.flush();
    }
}

/// The tenant's `chat` channel account (address: its slug), created the first time.
async fn ensure_account(
    pool: &sqlx::PgPool,
    tenant: TenantId,
    slug: &TenantSlug,
) -> anyhow::Result<()> {
    let mut tx = runtime::db::begin_tenant(pool, tenant).await?;
    sqlx::query(
        "INSERT INTO channel_accounts (tenant_id, channel, address, display_name)
         VALUES (wasit_current_tenant(), 'chat', $1, 'wasit chat')
         ON CONFLICT (channel, address) DO NOTHING",
    )
    .bind(slug.as_str())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::reply_line;

    #[test]
    fn a_reply_is_one_line_when_the_input_is_not_a_terminal() {
        assert_eq!(
            reply_line("sales", "أهلاً\nكيف أخدمك؟\r\nتمام", true),
            "sales: أهلاً\\nكيف أخدمك؟\\nتمام"
        );
        assert_eq!(reply_line("sales", "أهلاً\nتمام", false), "sales: أهلاً\nتمام");
    }
}
