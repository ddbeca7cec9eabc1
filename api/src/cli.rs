//! The `wasit` command line.
//!
//! Exit codes: 0 ok, 1 failure, 2 bad usage (clap's own, and ours for arguments that parse but
//! cannot be used). Results go to stdout, one value per line where a script may capture them;
//! logs and errors go to stderr.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use runtime::db::{Database, begin_tenant};
use runtime::{Email, Settings, TenantSlug};
use secrecy::SecretString;

use crate::app::{self, AppState};
use crate::auth::{JwtKeys, Role, hash_password};
use crate::repo;

const AFTER_HELP: &str = "\
Environment:
  DATABASE_URL     PostgreSQL server; unset: a private cluster under WASIT_DATA_DIR
  WASIT_DATA_DIR   where embedded state lives [default: ./.wasit]
  WASIT_HTTP_ADDR  listen address for `serve` [default: 127.0.0.1:8080]
  WASIT_JWT_SECRET HS256 signing key; unset: generated once into the data dir
  QDRANT_URL       a Qdrant server for the knowledge index; unset: embedded, under the data dir
  EMBEDDING_MODEL  dense embeddings from LLM_BASE_URL's /embeddings; unset: BM25 alone
  RUST_LOG         log filter, e.g. `info` or `api=debug` [default: info]

Exit codes: 0 ok, 1 failure, 2 bad usage.";

/// Wasit (وسيط): a multi-tenant, actor-based runtime for AI sales conversations.
#[derive(Debug, Parser)]
#[command(name = "wasit", version, about, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API, the webhooks and the actor runtime until SIGINT or SIGTERM.
    ///
    /// Applies pending migrations first. With DATABASE_URL unset, creates (once) and starts a
    /// private PostgreSQL cluster under WASIT_DATA_DIR, and stops it on shutdown.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage tenants (the businesses using Wasit).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage users (people who log in: admins, reps, prompt engineers, affiliates).
    #[command(subcommand)]
    User(UserCommand),
    /// Print a signed access token (JWT) for a tenant and role, for development and scripts.
    Token(TokenArgs),
    /// Bind channel accounts (business numbers, addresses) to tenants.
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// The knowledge base: ingest articles, search them as agents do, rebuild the index.
    #[command(subcommand)]
    Kb(crate::kb_cli::KbCommand),
    /// Prompt files: check them before they go live.
    #[command(subcommand)]
    Prompts(PromptsCommand),
    /// Talk to the agents in the terminal as a contact would, through the same turn the runtime
    /// runs (router, handoffs, tools acting on the tenant's CRM, the outbox); prompt files are
    /// reloaded as you edit them.
    ///
    /// Each line you type is one message. Replies print as `KIND: text`; when stdin is not a
    /// terminal, each reply is one line (newlines in it written `\n`) and the command exits at the
    /// end of input. What agents do (tool calls, handoffs, escalations) is shown on stderr.
    Chat(crate::chat::ChatArgs),
}

#[derive(Debug, Subcommand)]
pub enum PromptsCommand {
    /// Validate every prompt file in DIR (and its tenants/<slug>/ overlays): front matter,
    /// template syntax, variables the template is never given, tools that do not exist or that
    /// the agent kind may not call, and the rendered size against its token budget. Prints one
    /// `file:line: message` line per problem and exits 1 if there is any.
    Check {
        /// The prompt directory [default: WASIT_PROMPTS_DIR, else ./prompts].
        dir: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and print its id.
    Create {
        /// Short name used on the command line and at login: lowercase letters, digits, hyphens.
        #[arg(long, value_parser = TenantSlug::parse)]
        slug: TenantSlug,
        /// Display name, e.g. "ذهب الرياض".
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user in a tenant and print their id.
    Create {
        /// The tenant's slug.
        #[arg(long, value_parser = TenantSlug::parse)]
        tenant: TenantSlug,
        /// The login email (stored lower-case; unique within the tenant).
        #[arg(long, value_parser = Email::parse)]
        email: Email,
        /// What the user may do.
        #[arg(long, value_enum)]
        role: Role,
        /// Login password (at least 8 characters). Omit it to have one generated and printed once.
        #[arg(long)]
        password: Option<String>,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The tenant's slug.
    #[arg(long, value_parser = TenantSlug::parse)]
    pub tenant: TenantSlug,
    /// The role the token grants.
    #[arg(long, value_enum)]
    pub role: Role,
    /// Make the token's subject this user (by email); the user must exist in the tenant.
    #[arg(long, value_parser = Email::parse)]
    pub user: Option<Email>,
    /// Lifetime in minutes.
    #[arg(long, default_value_t = 720, value_parser = clap::value_parser!(u32).range(1..=525_600))]
    pub ttl_minutes: u32,
}

#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// Bind a channel account to a tenant.
    #[command(subcommand)]
    Add(ChannelAdd),
}

#[derive(Debug, Subcommand)]
pub enum ChannelAdd {
    /// A WhatsApp Cloud API business number.
    Whatsapp {
        /// The tenant's slug.
        #[arg(long, value_parser = TenantSlug::parse)]
        tenant: TenantSlug,
        /// The number's `phone_number_id` from Meta (digits), which webhooks carry in
        /// `metadata.phone_number_id`.
        #[arg(long, value_parser = parse_digits)]
        phone_number_id: String,
        /// The Graph API access token used to send from this number.
        #[arg(long)]
        access_token: String,
        /// The number as people see it, e.g. +966 50 000 0000.
        #[arg(long)]
        display_name: Option<String>,
    },
    /// An SMS number on a Twilio-compatible provider.
    Sms {
        /// The tenant's slug.
        #[arg(long, value_parser = TenantSlug::parse)]
        tenant: TenantSlug,
        /// The receiving number in E.164 form, e.g. +15005550006.
        #[arg(long, value_parser = parse_e164)]
        phone_number: String,
        /// The provider account that owns the number (Twilio: AC…).
        #[arg(long)]
        account_sid: String,
        /// The account's auth token: signs requests to us and authenticates ours.
        #[arg(long)]
        auth_token: String,
    },
    /// An email address that receives mail for the tenant.
    Email {
        /// The tenant's slug.
        #[arg(long, value_parser = TenantSlug::parse)]
        tenant: TenantSlug,
        /// The receiving address, e.g. sales@example.com.
        #[arg(long, value_parser = Email::parse)]
        address: Email,
        /// The name on outgoing mail.
        #[arg(long)]
        display_name: Option<String>,
    },
}

fn parse_digits(s: &str) -> Result<String, String> {
    if !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a phone_number_id: it is the number's id from Meta, digits only"
        ))
    }
}

fn parse_e164(s: &str) -> Result<String, String> {
    let digits = s.strip_prefix('+').unwrap_or("");
    if (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not an E.164 number: write + then 8 to 15 digits, e.g. +15005550006"
        ))
    }
}

/// An error that is the caller's to fix: exit code 2, like clap's own usage errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub(crate) String);

/// Parses the command line, runs the command and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    runtime::http::install_tls_provider();
    init_tracing(&cli.command);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn init_tracing(command: &Command) {
    use tracing_subscriber::EnvFilter;
    // The server logs its progress; one-shot commands speak only when something is wrong.
    let default = if matches!(command, Command::Serve) {
        "info"
    } else {
        "warn"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn run(command: Command) -> anyhow::Result<()> {
    let settings = Settings::from_env().map_err(|e| UsageError(e.to_string()))?;
    match command {
        Command::Serve => serve(&settings).await,
        Command::Migrate => migrate(&settings).await,
        Command::Tenant(TenantCommand::Create { slug, name }) => {
            with_database(&settings, |db| {
                Box::pin(async move {
                    let tenant = repo::tenants::create(&db.admin, &slug, &name)
                        .await
                        .map_err(usage_if_invalid)?;
                    println!("{}", tenant.id);
                    Ok(())
                })
            })
            .await
        }
        Command::User(UserCommand::Create {
            tenant,
            email,
            role,
            password,
            name,
        }) => {
            with_database(&settings, |db| {
                Box::pin(create_user(db, tenant, email, role, password, name))
            })
            .await
        }
        Command::Token(args) => {
            let keys = JwtKeys::from_settings(&settings)?;
            with_database(&settings, |db| Box::pin(token(db, keys, args))).await
        }
        Command::Channel(ChannelCommand::Add(add)) => {
            with_database(&settings, |db| Box::pin(channel_add(db, add))).await
        }
        Command::Kb(command) => crate::kb_cli::run(&settings, command).await,
        Command::Chat(args) => crate::chat::run(&settings, args).await,
        Command::Prompts(PromptsCommand::Check { dir }) => {
            prompts_check(&dir.unwrap_or_else(|| settings.prompts_dir.clone()))
        }
    }
}

/// `wasit prompts check`: problems on stdout, one per line; the verdict on stderr.
fn prompts_check(dir: &std::path::Path) -> anyhow::Result<()> {
    let counter = runtime::llm::tokens::TiktokenCounter::for_model("gpt-4o-mini");
    let report = agents::check::check_dir(dir, counter.as_ref());
    for problem in &report.problems {
        println!("{problem}");
    }
    if report.problems.is_empty() {
        eprintln!(
            "{} prompt files in {}: no problems",
            report.files,
            dir.display()
        );
        Ok(())
    } else {
        anyhow::bail!(
            "{} problems in the {} prompt files of {}",
            report.problems.len(),
            report.files,
            dir.display()
        )
    }
}

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Opens the database, migrates it (so every command works on a fresh install), runs `f`, and
/// closes the database (stopping the embedded cluster if this process started it) whatever
/// `f` returned.
async fn with_database<F>(settings: &Settings, f: F) -> anyhow::Result<()>
where
    F: for<'a> FnOnce(&'a Database) -> BoxFuture<'a, anyhow::Result<()>>,
{
    let db = Database::open(settings)
        .await
        .context("cannot open the database")?;
    let result = async {
        db.migrate().await.context("cannot apply migrations")?;
        f(&db).await
    }
    .await;
    db.close().await;
    result
}

pub(crate) fn usage_if_invalid(e: runtime::Error) -> anyhow::Error {
    match e {
        runtime::Error::Invalid(msg) => UsageError(msg).into(),
        other => other.into(),
    }
}

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let db = Database::open(settings)
        .await
        .context("cannot open the database")?;
    if let Some(pg) = db.embedded() {
        let verb = if pg.created { "created" } else { "reused" };
        eprintln!("embedded PostgreSQL {verb} at {}", pg.pgdata().display());
    }
    let result = db.migrate().await.context("cannot apply migrations");
    db.close().await;
    let report = result?;
    println!(
        "migrations: {} applied now, {} in total; the database is up to date",
        report.applied_now, report.total
    );
    Ok(())
}

/// Says so at start when the PostgreSQL server is configured in a way Wasit's tables suffer from.
/// Its queue-like tables (messages marked processed, outbox rows sent) need autovacuum: without
/// it, dead rows pile up and plans are made without statistics, and every turn gets slower
/// (docs/BENCHMARKS.md measured a fall from ~500 to ~90 turns/s within a minute).
async fn warn_about_server_settings(pool: &sqlx::PgPool) {
    let autovacuum: Result<String, _> = sqlx::query_scalar("SELECT current_setting('autovacuum')")
        .fetch_one(pool)
        .await;
    if autovacuum.ok().as_deref() == Some("off") {
        tracing::warn!(
            "autovacuum is off on this PostgreSQL server: Wasit's message and outbox tables churn \
             like queues, and without autovacuum every turn gets slower; turn it on (or vacuum \
             and analyze them on a schedule)"
        );
    }
}

/// How often `serve` brings the knowledge index up to date besides at start and after writes.
const KNOWLEDGE_SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

async fn serve(settings: &Settings) -> anyhow::Result<()> {
    let db = Database::open(settings)
        .await
        .context("cannot open the database")?;
    let result = async {
        let report = db.migrate().await.context("cannot apply migrations")?;
        tracing::info!(
            applied = report.applied_now,
            total = report.total,
            "migrations up to date"
        );
        warn_about_server_settings(&db.admin).await;
        let keys = JwtKeys::from_settings(settings)?;
        let whatsapp = app::WhatsAppWebhook::from_settings(settings);
        if whatsapp.is_none() {
            tracing::warn!(
                "WHATSAPP_APP_SECRET or WHATSAPP_VERIFY_TOKEN is unset: the WhatsApp webhook answers 503"
            );
        }
        // The runtime gets a pool of its own: a busy runtime never delays a webhook's answer.
        let runtime_pool = db.app_pool(runtime::db::runtime_pool_size());
        // The knowledge base: the index catches up with PostgreSQL in the background (whatever
        // it lacks, from a crash or a rebuild); searches meanwhile see what it holds.
        let knowledge = match crate::wiring::knowledge(settings, db.app.clone()).await {
            Ok(kb) => {
                let kb = std::sync::Arc::new(kb);
                tracing::info!(index = kb.index().name(), "knowledge base open");
                let syncing = kb.clone();
                // At start, then every minute: whatever a failed catch-up (an embedder outage, a
                // lost index) left behind is indexed without waiting for the next write.
                tokio::spawn(async move {
                    let mut every = tokio::time::interval(KNOWLEDGE_SYNC_INTERVAL);
                    loop {
                        every.tick().await;
                        match syncing.sync(&()).await {
                            Ok(r) if r.articles > 0 => tracing::info!(
                                articles = r.articles,
                                chunks = r.chunks,
                                "knowledge index caught up"
                            ),
                            Ok(_) => {}
                            Err(e) => tracing::warn!("the knowledge index could not catch up: {e}"),
                        }
                    }
                });
                Some(kb)
            }
            Err(e) => {
                tracing::error!("the knowledge base is unavailable (search_knowledge and /api/v1/articles answer that it is): {e:#}");
                None
            }
        };
        let parts =
            crate::wiring::runtime_parts(settings, runtime_pool, knowledge.clone()).await?;
        let runtime = std::sync::Arc::new(
            runtime::actors::Runtime::start(parts).await.context("cannot start the conversation runtime")?,
        );
        let state = AppState::new(db.app.clone(), keys)
            .with_platform(db.platform_pool())
            .with_whatsapp(whatsapp)
            .with_runtime(runtime.clone());
        let state = match knowledge {
            Some(kb) => state.with_knowledge(kb),
            None => state,
        };
        let listener = tokio::net::TcpListener::bind(settings.http_addr)
            .await
            .with_context(|| {
                format!("cannot listen on {} (WASIT_HTTP_ADDR)", settings.http_addr)
            })?;
        let addr = listener.local_addr()?;
        state.mark_started();
        println!("wasit listening on http://{addr}");
        let _ = std::io::stdout().flush();
        axum::serve(listener, app::router(state))
            .with_graceful_shutdown(app::shutdown_signal())
            .await
            .context("the HTTP server failed")?;
        tracing::info!("HTTP server drained");
        runtime.shutdown().await;
        tracing::info!("conversation runtime stopped");
        anyhow::Ok(())
    }
    .await;
    db.close().await;
    result
}

async fn create_user(
    db: &Database,
    tenant: TenantSlug,
    email: Email,
    role: Role,
    password: Option<String>,
    name: Option<String>,
) -> anyhow::Result<()> {
    let tenant_id = repo::tenants::require_by_slug(&db.app, &tenant)
        .await
        .map_err(usage_if_invalid)?;
    let (password, generated) = match password {
        Some(p) if p.chars().count() < 8 => {
            return Err(UsageError("--password needs at least 8 characters".into()).into());
        }
        Some(p) => (p, false),
        None => (runtime::secrets::random_hex(12), true),
    };
    let secret = SecretString::from(password.clone());
    let hash = tokio::task::spawn_blocking(move || hash_password(&secret)).await??;
    let mut tx = begin_tenant(&db.app, tenant_id).await?;
    let user = repo::users::create(&mut tx, &email, name.as_deref(), role, Some(&hash)).await?;
    tx.commit().await?;
    println!("{}", user.id);
    if generated {
        eprintln!("generated password for {email} (shown once): {password}");
    }
    Ok(())
}

async fn token(db: &Database, keys: JwtKeys, args: TokenArgs) -> anyhow::Result<()> {
    let tenant_id = repo::tenants::require_by_slug(&db.app, &args.tenant)
        .await
        .map_err(usage_if_invalid)?;
    let subject = match &args.user {
        Some(email) => {
            let mut tx = begin_tenant(&db.app, tenant_id).await?;
            let found = repo::users::find_for_login(&mut tx, email).await?;
            tx.commit().await?;
            let (user, _) = found.filter(|(u, _)| !u.disabled).ok_or_else(|| {
                UsageError(format!(
                    "no user {email} in tenant {}; create one with `wasit user create`",
                    args.tenant
                ))
            })?;
            user.id.to_string()
        }
        None => format!("cli:{}", args.tenant),
    };
    let ttl = time::Duration::minutes(i64::from(args.ttl_minutes));
    println!("{}", keys.issue(tenant_id, args.role, &subject, ttl));
    Ok(())
}

async fn channel_add(db: &Database, add: ChannelAdd) -> anyhow::Result<()> {
    let (tenant, channel, address, display_name, credentials) = match add {
        ChannelAdd::Whatsapp {
            tenant,
            phone_number_id,
            access_token,
            display_name,
        } => (
            tenant,
            "whatsapp",
            phone_number_id,
            display_name,
            serde_json::json!({ "access_token": access_token }),
        ),
        ChannelAdd::Sms {
            tenant,
            phone_number,
            account_sid,
            auth_token,
        } => (
            tenant,
            "sms",
            phone_number,
            None,
            serde_json::json!({ "account_sid": account_sid, "auth_token": auth_token }),
        ),
        ChannelAdd::Email {
            tenant,
            address,
            display_name,
        } => (
            tenant,
            "email",
            address.to_string(),
            display_name,
            serde_json::json!({}),
        ),
    };
    let tenant_id = repo::tenants::require_by_slug(&db.app, &tenant)
        .await
        .map_err(usage_if_invalid)?;
    let mut tx = begin_tenant(&db.app, tenant_id).await?;
    let id = repo::channels::add(
        &mut tx,
        channel,
        &address,
        display_name.as_deref(),
        &credentials,
    )
    .await?;
    tx.commit().await?;
    println!("{id}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
