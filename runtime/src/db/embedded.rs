//! The embedded PostgreSQL cluster: what Wasit runs when `DATABASE_URL` is unset.
//!
//! The cluster lives in `<data dir>/postgres`, is created once with the machine's own PostgreSQL
//! server binaries (`initdb`, `pg_ctl`), listens on a free loopback port (no Unix socket), and
//! requires a password that is generated into `<data dir>/postgres.password` (mode 0600).
//!
//! PostgreSQL refuses to run as root. When Wasit runs as root, every server command runs as an
//! unprivileged user (`postgres` unless `WASIT_PG_USER` names another) through `runuser`, the
//! cluster directory belongs to that user, and the data directory must be reachable by it.
//!
//! Several processes may use one cluster (a `wasit serve` and a `wasit token`, say). Each holds a
//! shared lock on `<data dir>/postgres.lease` for as long as it uses the cluster; whichever process
//! closes last (it can take the lease exclusively) stops the server, whether or not it started it.
//! So a server left behind by a killed process is adopted by the next one and stopped when that one
//! is done. Starting and stopping are serialised with an exclusive lock on `<data dir>/postgres.lock`.
//!
//! The application pool logs in as `wasit_app` itself (password in `postgres.app_password`), never
//! as the superuser, so no session of the application can `RESET ROLE` its way to more privilege.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};

use secrecy::{ExposeSecret, SecretString};

use crate::error::{Error, Result};
use crate::secrets;

/// The superuser created in the embedded cluster, and the database Wasit uses in it.
const SUPERUSER: &str = "wasit";
const DATABASE: &str = "wasit";

/// A running embedded cluster, in use by this process until [`EmbeddedPostgres::stop`] or drop.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    data_dir: PathBuf,
    pgdata: PathBuf,
    bin_dir: PathBuf,
    run_as: Option<String>,
    port: u16,
    password: SecretString,
    app_password: SecretString,
    /// Our shared lock on `postgres.lease`: while any process holds one, the server stays up.
    lease: Option<fs::File>,
    /// Set once released, so `Drop` does not release twice.
    stopped: AtomicBool,
    /// `initdb` ran in this process: the cluster is new.
    pub created: bool,
}

impl EmbeddedPostgres {
    /// Creates the cluster under `data_dir` if it does not exist, starts it if it is not running,
    /// and makes sure the `wasit` database exists.
    pub async fn start(data_dir: &Path) -> Result<Self> {
        let data_dir = data_dir.to_owned();
        let (pg, setup_lock) = tokio::task::spawn_blocking(move || start_blocking(&data_dir))
            .await
            .map_err(|e| {
                Error::Unavailable(format!("embedded PostgreSQL set-up panicked: {e}"))
            })??;
        // Still under the set-up lock, so two processes do not both create the database.
        pg.ensure_database().await?;
        drop(setup_lock);
        Ok(pg)
    }

    /// The superuser's connection URL of the `wasit` database (migrations, operator commands).
    pub fn url(&self) -> String {
        self.url_for(SUPERUSER, &self.password, DATABASE)
    }

    /// The application role's connection URL of the `wasit` database. Valid once
    /// [`EmbeddedPostgres::enable_app_login`] has run after the migrations created the role.
    pub fn app_url(&self) -> String {
        self.url_for(super::APP_ROLE, &self.app_password, DATABASE)
    }

    fn url_for(&self, user: &str, password: &SecretString, database: &str) -> String {
        format!(
            "postgres://{user}:{}@127.0.0.1:{}/{database}",
            password.expose_secret(),
            self.port
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster directory (`<data dir>/postgres`).
    pub fn pgdata(&self) -> &Path {
        &self.pgdata
    }

    /// Lets `wasit_app` log in with its generated password. Run after migrations.
    pub async fn enable_app_login(&self, admin: &sqlx::PgPool) -> Result<()> {
        // The password is generated hex, so quoting it into the statement is safe; ALTER ROLE takes
        // no bind parameters.
        sqlx::query(&format!(
            "ALTER ROLE {} WITH LOGIN PASSWORD '{}'",
            super::APP_ROLE,
            self.app_password.expose_secret()
        ))
        .execute(admin)
        .await?;
        Ok(())
    }

    async fn ensure_database(&self) -> Result<()> {
        use sqlx::Connection;
        let mut conn =
            sqlx::PgConnection::connect(&self.url_for(SUPERUSER, &self.password, "postgres"))
                .await?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(DATABASE)
                .fetch_one(&mut conn)
                .await?;
        if !exists {
            sqlx::query(&format!("CREATE DATABASE {DATABASE} ENCODING 'UTF8'"))
                .execute(&mut conn)
                .await?;
        }
        conn.close().await?;
        Ok(())
    }

    /// Releases this process's use of the cluster, stopping the server (fast shutdown: open
    /// transactions roll back) if no other process is using it.
    pub async fn stop(self) {
        let mut this = self;
        let _ = tokio::task::spawn_blocking(move || this.stop_blocking()).await;
    }

    fn stop_blocking(&mut self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        let setup_lock = match lock_file(&self.data_dir.join("postgres.lock")) {
            Ok(lock) => lock,
            Err(e) => {
                tracing::warn!(error = %e, "cannot lock the embedded PostgreSQL; leaving it running");
                return;
            }
        };
        let Some(lease) = self.lease.take() else {
            return;
        };
        // Converting our shared lease to an exclusive one succeeds only if no one else holds one.
        if lease.try_lock().is_err() {
            tracing::info!(
                "embedded PostgreSQL is still in use by another process; leaving it running"
            );
            return;
        }
        let mut cmd = command_as(self.run_as.as_deref(), &self.bin_dir.join("pg_ctl"));
        cmd.arg("stop")
            .arg("-D")
            .arg(&self.pgdata)
            .args(["-m", "fast", "-w", "-t", "60"]);
        match run(cmd, "pg_ctl stop") {
            Ok(_) => tracing::info!(pgdata = %self.pgdata.display(), "embedded PostgreSQL stopped"),
            Err(e) => tracing::warn!(error = %e, "could not stop embedded PostgreSQL"),
        }
        drop(lease);
        drop(setup_lock);
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        self.stop_blocking();
    }
}

fn lock_file(path: &Path) -> Result<fs::File> {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    file.lock()?;
    Ok(file)
}

/// Everything up to a running server, under the set-up lock, which it returns still held.
fn start_blocking(data_dir: &Path) -> Result<(EmbeddedPostgres, fs::File)> {
    fs::create_dir_all(data_dir)?;
    let data_dir = data_dir.canonicalize()?;
    let setup_lock = lock_file(&data_dir.join("postgres.lock"))?;

    let run_as = running_as_root().then(|| {
        std::env::var("WASIT_PG_USER")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "postgres".to_owned())
    });
    let owner = match &run_as {
        Some(user) => Some(lookup_user(user)?),
        None => None,
    };
    if let Some(user) = &run_as {
        // The server user must be able to reach its cluster directory through the data directory.
        let mut perms = fs::metadata(&data_dir)?.permissions();
        perms.set_mode(perms.mode() | 0o711);
        fs::set_permissions(&data_dir, perms)?;
        check_reachable(user, &data_dir)?;
    }

    let bin_dir = find_bin_dir()?;
    let password = secrets::load_or_create(&data_dir.join("postgres.password"))?;
    let app_password = secrets::load_or_create(&data_dir.join("postgres.app_password"))?;
    let pgdata = data_dir.join("postgres");
    let mut created = false;
    if !pgdata.join("PG_VERSION").exists() {
        init_cluster(
            &bin_dir,
            &data_dir,
            &pgdata,
            run_as.as_deref(),
            owner,
            &password,
        )?;
        created = true;
    }

    let pg_ctl = bin_dir.join("pg_ctl");
    let mut status = command_as(run_as.as_deref(), &pg_ctl);
    status.arg("status").arg("-D").arg(&pgdata);
    let running = status.output().map(|o| o.status.success()).unwrap_or(false);

    let port = match running.then(|| running_port(&pgdata)).flatten() {
        Some(port) => {
            tracing::info!(port, "using the running embedded PostgreSQL");
            port
        }
        None => {
            let port = start_server(&pg_ctl, &pgdata, run_as.as_deref())?;
            tracing::info!(port, pgdata = %pgdata.display(), "embedded PostgreSQL started");
            port
        }
    };

    // Taken after the server started, so the server process never inherits it (and std opens
    // files close-on-exec anyway).
    let lease = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(data_dir.join("postgres.lease"))?;
    lease.lock_shared()?;

    let pg = EmbeddedPostgres {
        data_dir,
        pgdata,
        bin_dir,
        run_as,
        port,
        password,
        app_password,
        lease: Some(lease),
        stopped: AtomicBool::new(false),
        created,
    };
    Ok((pg, setup_lock))
}

/// The port of the running server, from line 4 of `postmaster.pid`, confirmed by a connection.
fn running_port(pgdata: &Path) -> Option<u16> {
    let pid_file = fs::read_to_string(pgdata.join("postmaster.pid")).ok()?;
    let port: u16 = pid_file.lines().nth(3)?.trim().parse().ok()?;
    std::net::TcpStream::connect(("127.0.0.1", port))
        .ok()
        .map(|_| port)
}

/// Runs `initdb` into a temporary directory and renames it into place, so an interrupted
/// initialisation never leaves a half-made cluster behind.
fn init_cluster(
    bin_dir: &Path,
    data_dir: &Path,
    pgdata: &Path,
    run_as: Option<&str>,
    owner: Option<(u32, u32)>,
    password: &SecretString,
) -> Result<()> {
    let staging = data_dir.join("postgres.initdb");
    if staging.exists() {
        fs::remove_dir_all(&staging)?;
    }
    fs::create_dir(&staging)?;
    fs::set_permissions(&staging, fs::Permissions::from_mode(0o700))?;
    let pwfile = data_dir.join("postgres.initdb.pw");
    let _ = fs::remove_file(&pwfile);
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&pwfile)?
        .write_all(password.expose_secret().as_bytes())?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&staging, Some(uid), Some(gid))?;
        std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid))?;
    }

    tracing::info!(pgdata = %pgdata.display(), "creating the embedded PostgreSQL cluster");
    let mut cmd = command_as(run_as, &bin_dir.join("initdb"));
    cmd.arg("-D")
        .arg(&staging)
        .args([
            "-U",
            SUPERUSER,
            "-A",
            "scram-sha-256",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-instructions",
        ])
        .arg(format!("--pwfile={}", pwfile.display()));
    let result = run(cmd, "initdb");
    let _ = fs::remove_file(&pwfile);
    result?;

    let mut conf = fs::OpenOptions::new()
        .append(true)
        .open(staging.join("postgresql.conf"))?;
    std::io::Write::write_all(
        &mut conf,
        b"\n# Written by wasit: loopback TCP only, port given at start.\n\
          listen_addresses = '127.0.0.1'\n\
          unix_socket_directories = ''\n\
          max_connections = 200\n",
    )?;
    fs::rename(&staging, pgdata)?;
    Ok(())
}

fn start_server(pg_ctl: &Path, pgdata: &Path, run_as: Option<&str>) -> Result<u16> {
    let mut last_error = None;
    // A free port can be taken between choosing it and the server binding it: try a few.
    for _ in 0..3 {
        let port = free_port()?;
        let mut cmd = command_as(run_as, pg_ctl);
        cmd.arg("start")
            .arg("-D")
            .arg(pgdata)
            .arg("-l")
            .arg(pgdata.join("server.log"))
            .args(["-w", "-t", "60", "-o"])
            .arg(format!("-p {port} {SERVER_SETTINGS}"));
        match run(cmd, "pg_ctl start") {
            Ok(_) => return Ok(port),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| Error::Unavailable("pg_ctl start failed".into())))
}

/// Settings the embedded server always starts with (on the command line, so clusters created by
/// older versions get them too). Wasit's tables churn like queues (messages are marked processed,
/// outbox rows sent, conversations bumped every turn): the autovacuum launcher looks at each
/// database every 10 s instead of every minute, so a new database's first statistics and cleanup
/// come within seconds of load instead of after a minute of plans made without statistics.
/// docs/BENCHMARKS.md shows the difference.
const SERVER_SETTINGS: &str = "-c autovacuum_naptime=10s";

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn command_as(run_as: Option<&str>, program: &Path) -> Command {
    match run_as {
        Some(user) => {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", user, "--"]).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

fn run(mut cmd: Command, what: &str) -> Result<Output> {
    let output = cmd.output().map_err(|e| {
        Error::Unavailable(format!(
            "could not run {what} ({:?}): {e}",
            cmd.get_program()
        ))
    })?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(Error::Unavailable(format!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            String::from_utf8_lossy(&output.stdout).trim()
        )))
    }
}

fn running_as_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// The uid and gid of `user`, from `/etc/passwd`.
fn lookup_user(user: &str) -> Result<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() >= 4 && fields[0] == user)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
        .next()
        .ok_or_else(|| {
            Error::Config(format!(
                "Wasit runs as root, and PostgreSQL must run as an unprivileged user, but user {user:?} does not exist; \
                 create it (apt-get install postgresql does), set WASIT_PG_USER to another user, or set DATABASE_URL"
            ))
        })
}

fn check_reachable(user: &str, dir: &Path) -> Result<()> {
    let ok = Command::new("runuser")
        .args(["-u", user, "--", "test", "-x"])
        .arg(dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "PostgreSQL runs as user {user:?}, which cannot reach {}; set WASIT_DATA_DIR to a directory every \
             parent of which it may enter (for example /var/lib/wasit), or set DATABASE_URL",
            dir.display()
        )))
    }
}

/// Finds the directory of `initdb` and `pg_ctl`: `WASIT_PG_BIN_DIR`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian keeps them there, off PATH), else PATH.
fn find_bin_dir() -> Result<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Ok(dir) = std::env::var("WASIT_PG_BIN_DIR") {
        let dir = PathBuf::from(dir);
        return if has_tools(&dir) {
            Ok(dir)
        } else {
            Err(Error::Config(format!(
                "WASIT_PG_BIN_DIR={} has no initdb and pg_ctl",
                dir.display()
            )))
        };
    }
    let mut debian: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, dir)| has_tools(dir))
        .collect();
    debian.sort();
    if let Some((_, dir)) = debian.pop() {
        return Ok(dir);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path.into_iter().find(|dir| has_tools(dir)).ok_or_else(|| {
        Error::Config(
            "the PostgreSQL server binaries (initdb, pg_ctl) were not found in WASIT_PG_BIN_DIR, \
             /usr/lib/postgresql/*/bin or PATH; install them (apt-get install postgresql) or set DATABASE_URL"
                .to_owned(),
        )
    })
}
