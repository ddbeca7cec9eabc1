//! PostgreSQL: pools, migrations, and tenant-scoped transactions.
//!
//! Two pools share one server. The **admin pool** connects as the role in `DATABASE_URL` (or the
//! embedded cluster's superuser); it runs migrations, which makes it the owner of every table, and
//! operator commands such as `wasit tenant create`. The **app pool** runs every request and job as
//! `wasit_app`, a role that owns nothing and lacks `BYPASSRLS`, so row-level security applies to
//! every statement. It logs in as `wasit_app` itself on the embedded cluster, as the role of
//! `WASIT_APP_DATABASE_URL` when that is set, and otherwise with the `DATABASE_URL` credentials; in
//! every case each connection also executes `SET ROLE wasit_app` when it opens.
//!
//! Tenant-scoped work goes through [`begin_tenant`], which opens a transaction whose first statement
//! is `set_config('app.tenant_id', $1, true)`. The setting is transaction-local, so it can never leak
//! to the next user of a pooled connection; with no tenant set, every policy matches no row.

pub mod embedded;

use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Executor, PgPool, Postgres, Transaction};

use crate::error::Result;
use crate::ids::{TenantId, TenantSlug};
use crate::settings::Settings;

pub use embedded::EmbeddedPostgres;

/// Bounds on every tenant transaction's statements and lock waits, so nothing waits forever.
pub const STATEMENT_TIMEOUT: &str = "15s";
pub const LOCK_TIMEOUT: &str = "5s";

/// The role the application runs as. Created by the first migration.
pub const APP_ROLE: &str = "wasit_app";

/// Every migration in `migrations/`, compiled into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// A transaction bound to one tenant. Dropping it without `commit` rolls back.
pub type TenantTx = Transaction<'static, Postgres>;

/// The application's view of PostgreSQL.
#[derive(Debug)]
pub struct Database {
    /// Owner role: migrations and operator commands. Row-level security is forced on every tenant
    /// table, so even this pool sees rows only through a tenant transaction unless it is a superuser.
    pub admin: PgPool,
    /// `wasit_app` role: every request and every job.
    pub app: PgPool,
    /// Set when `DATABASE_URL` is unset and Wasit runs its own cluster; stopped by [`Database::close`].
    embedded: Option<EmbeddedPostgres>,
    /// How the app pool connects, to open more pools like it.
    app_options: PgConnectOptions,
    /// How the admin pool connects (the platform pool connects the same way, then SET ROLE).
    admin_options: PgConnectOptions,
}

/// What [`Database::migrate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationReport {
    pub applied_now: usize,
    pub total: usize,
}

impl Database {
    /// Connects to `DATABASE_URL`, or creates (once) and starts the embedded cluster.
    /// Does not migrate; call [`Database::migrate`].
    pub async fn open(settings: &Settings) -> Result<Self> {
        match &settings.database_url {
            Some(url) => {
                let app_url = settings
                    .app_database_url
                    .as_ref()
                    .map(|u| u.expose_secret());
                Self::connect(url.expose_secret(), app_url, None).await
            }
            None => {
                let embedded = EmbeddedPostgres::start(&settings.data_dir).await?;
                let (url, app_url) = (embedded.url(), embedded.app_url());
                Self::connect(&url, Some(&app_url), Some(embedded)).await
            }
        }
    }

    /// Connects the admin pool to `url` and the app pool to `app_url` (default: `url`).
    pub async fn connect(
        url: &str,
        app_url: Option<&str>,
        embedded: Option<EmbeddedPostgres>,
    ) -> Result<Self> {
        let options = |url: &str| -> Result<PgConnectOptions> {
            let options: PgConnectOptions = url.parse()?;
            Ok(options
                .application_name("wasit")
                .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1)))
        };
        let admin_options = options(url)?;
        let admin = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(admin_options.clone())
            .await?;
        // Lazy: before the first migration the role does not exist yet.
        let app_options = options(app_url.unwrap_or(url))?;
        let app = app_pool_options()
            .max_connections(app_pool_size())
            .connect_lazy_with(app_options.clone());
        Ok(Self {
            admin,
            app,
            embedded,
            app_options,
            admin_options,
        })
    }

    /// Applies every pending migration as the admin role.
    pub async fn migrate(&self) -> Result<MigrationReport> {
        let before = applied_migrations(&self.admin).await?;
        MIGRATOR.run(&self.admin).await?;
        if let Some(pg) = &self.embedded {
            pg.enable_app_login(&self.admin).await?;
        }
        let after = applied_migrations(&self.admin).await?;
        Ok(MigrationReport {
            applied_now: after.saturating_sub(before),
            total: after,
        })
    }

    /// Another pool of `max` connections as `wasit_app`: the conversation runtime gets its own, so
    /// a busy runtime never makes webhooks wait for a connection (they must answer fast).
    pub fn app_pool(&self, max: u32) -> PgPool {
        app_pool_options()
            .max_connections(max)
            .connect_lazy_with(self.app_options.clone())
    }

    /// A small pool as `wasit_platform`, the one application role that reads across tenants:
    /// superadmins' platform routes only. Connects as the owner role and switches with
    /// `SET ROLE` (the owner is a member; `wasit_app` is not).
    pub fn platform_pool(&self) -> PgPool {
        PgPoolOptions::new()
            .min_connections(0)
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute("SET ROLE wasit_platform").await?;
                    Ok(())
                })
            })
            .connect_lazy_with(self.admin_options.clone())
    }

    /// True when Wasit started and owns the embedded cluster it is connected to.
    pub fn embedded(&self) -> Option<&EmbeddedPostgres> {
        self.embedded.as_ref()
    }

    /// Closes both pools, then stops the embedded cluster if this process started it.
    pub async fn close(mut self) {
        self.app.close().await;
        self.admin.close().await;
        if let Some(pg) = self.embedded.take() {
            pg.stop().await;
        }
    }
}

/// Pool options for the application role: every connection switches to `wasit_app` as it opens.
pub fn app_pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute("SET ROLE wasit_app").await?;
                Ok(())
            })
        })
}

/// Connections of the conversation runtime's own pool (`WASIT_RUNTIME_POOL_SIZE`): by default
/// twice the cores. Turns hold a connection only while they read and commit (never while a model
/// generates), so a few connections serve hundreds of turns a second; more of them on few cores
/// only make the database's backends compete, which slows webhooks and turns alike (measured in
/// docs/BENCHMARKS.md).
pub fn runtime_pool_size() -> u32 {
    std::env::var("WASIT_RUNTIME_POOL_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| {
            let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
            u32::try_from(cores * 2).unwrap_or(u32::MAX).max(2)
        })
}

fn app_pool_size() -> u32 {
    std::env::var("WASIT_DB_POOL_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16)
}

async fn applied_migrations(pool: &PgPool) -> Result<usize> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    if !exists {
        return Ok(0);
    }
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(pool)
        .await?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Opens a transaction scoped to `tenant`: its first statement sets `app.tenant_id`
/// transaction-locally, which every row-level security policy reads. This is the only way the
/// application touches tenant data.
pub async fn begin_tenant(pool: &PgPool, tenant: TenantId) -> Result<TenantTx> {
    // One round trip: BEGIN and the setting travel together as a simple query. The id is a
    // formatted UUID (hex digits and dashes), so it cannot break out of the literal.
    #[expect(
        clippy::disallowed_methods,
        reason = "this is the one place that opens tenant transactions"
    )]
    let tx = pool
        .begin_with(format!(
            "BEGIN; SELECT set_config('app.tenant_id', '{}', true), \
             set_config('statement_timeout', '{STATEMENT_TIMEOUT}', true), \
             set_config('lock_timeout', '{LOCK_TIMEOUT}', true)",
            tenant.0.hyphenated()
        ))
        .await?;
    Ok(tx)
}

/// Opens a transaction on the platform pool ([`Database::platform_pool`]): the one way into the
/// cross-tenant view, for superadmins' platform routes, which audit every call in it.
pub async fn begin_platform(pool: &PgPool) -> Result<TenantTx> {
    #[expect(
        clippy::disallowed_methods,
        reason = "the platform view is the one other place that opens transactions"
    )]
    let tx = pool
        .begin_with(format!(
            "BEGIN; SELECT set_config('statement_timeout', '{STATEMENT_TIMEOUT}', true)"
        ))
        .await?;
    Ok(tx)
}

/// Resolves a tenant slug before any tenant is known (login, operator commands). Runs the
/// `SECURITY DEFINER` function `wasit_tenant_id_by_slug`, which reveals only the id.
pub async fn tenant_id_by_slug(pool: &PgPool, slug: &TenantSlug) -> Result<Option<TenantId>> {
    let id: Option<uuid::Uuid> = sqlx::query_scalar("SELECT wasit_tenant_id_by_slug($1)")
        .bind(slug.as_str())
        .fetch_one(pool)
        .await?;
    Ok(id.map(TenantId))
}

/// Resolves the tenant that owns a receiving channel address (a WhatsApp `phone_number_id`, an
/// SMS number, an email address). Webhooks use this: the tenant never comes from a payload field
/// other than the address the provider delivered to.
pub async fn tenant_id_by_channel(
    pool: &PgPool,
    channel: &str,
    address: &str,
) -> Result<Option<TenantId>> {
    let id: Option<uuid::Uuid> = sqlx::query_scalar("SELECT wasit_tenant_id_by_channel($1, $2)")
        .bind(channel)
        .bind(address)
        .fetch_one(pool)
        .await?;
    Ok(id.map(TenantId))
}
