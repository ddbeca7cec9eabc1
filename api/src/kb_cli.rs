//! `wasit kb`: ingest articles, search them, rebuild and check the vector index.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use knowledge_base::GLOBAL_TENANT;
use knowledge_base::article::Article;
use knowledge_base::service::{ArticleInput, KnowledgeBase, Progress, Stored, markdown_files};
use runtime::db::Database;
use runtime::{Settings, TenantId, TenantSlug};

use crate::cli::{UsageError, usage_if_invalid};
use crate::repo;

#[derive(Debug, Subcommand)]
pub enum KbCommand {
    /// Chunk, embed and index the Markdown articles below DIR, for one tenant or for everyone.
    ///
    /// DIR is the whole set: files whose bytes have not changed are skipped, changed ones are
    /// replaced, and articles ingested before from files no longer there are removed. A file that
    /// does not parse is reported (`file:line: reason`), keeps its previous version, and makes
    /// the exit code 1 once the rest is done.
    Ingest(IngestArgs),
    /// Search a tenant's articles and the global ones as agents do, and print the ranked
    /// passages: rank, score, article title, heading path (tab-separated).
    Search(SearchArgs),
    /// Rebuild the vector index from PostgreSQL (the source of truth): empty it, measure the
    /// collection again, and write every article.
    Reindex,
    /// Bring the vector index up to date with PostgreSQL (as every start does), then compare
    /// the two chunk by chunk and list any difference (exit code 1 if any).
    Check,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("owner").required(true).args(["tenant", "global"])))]
pub struct IngestArgs {
    /// The directory of articles (`*.md` with `+++` TOML front matter), searched recursively.
    /// Required with --tenant; with --global it defaults to knowledge-base/articles.
    pub dir: Option<PathBuf>,
    /// The tenant the articles belong to (its slug).
    #[arg(long, value_parser = TenantSlug::parse)]
    pub tenant: Option<TenantSlug>,
    /// The articles are global: every tenant's agents find them.
    #[arg(long)]
    pub global: bool,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// What to search for, in any language (Arabic is normalised as agents' queries are).
    pub query: String,
    /// The tenant whose agents would ask (its own and the global articles are searched).
    #[arg(long, value_parser = TenantSlug::parse)]
    pub tenant: TenantSlug,
    /// How many results.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=50))]
    pub limit: u16,
    /// Print each passage's text under its line.
    #[arg(long)]
    pub text: bool,
}

/// Runs a `wasit kb` command.
pub async fn run(settings: &Settings, command: KbCommand) -> anyhow::Result<()> {
    let db = Database::open(settings)
        .await
        .context("cannot open the database")?;
    let result = async {
        db.migrate().await.context("cannot apply migrations")?;
        let kb = open(settings, &db).await?;
        match command {
            KbCommand::Ingest(args) => ingest(&db, &kb, args).await,
            KbCommand::Search(args) => search(&db, &kb, args).await,
            KbCommand::Reindex => {
                let started = Instant::now();
                let bar = Bar::new("indexing");
                let report = kb.reindex(&bar).await?;
                bar.finish();
                println!(
                    "reindexed {} articles, {} chunks in {:.1} s",
                    report.articles,
                    report.chunks,
                    started.elapsed().as_secs_f64()
                );
                Ok(())
            }
            KbCommand::Check => {
                let bar = Bar::new("indexing");
                kb.sync(&bar).await?;
                bar.finish();
                let problems = kb.check(&db.admin).await?;
                for p in &problems {
                    println!("{p}");
                }
                if problems.is_empty() {
                    println!("the index agrees with PostgreSQL");
                    Ok(())
                } else {
                    anyhow::bail!(
                        "{} differences between the index and PostgreSQL",
                        problems.len()
                    )
                }
            }
        }
    }
    .await;
    db.close().await;
    result
}

async fn open(settings: &Settings, db: &Database) -> anyhow::Result<KnowledgeBase> {
    crate::wiring::knowledge(settings, db.app.clone())
        .await
        .map_err(|e| match e.downcast::<knowledge_base::service::KbError>() {
            Ok(knowledge_base::service::KbError::Invalid(m)) => UsageError(m).into(),
            Ok(other) => anyhow::Error::from(other).context("cannot open the knowledge base"),
            Err(e) => e,
        })
}

async fn tenant_id(db: &Database, slug: &TenantSlug) -> anyhow::Result<TenantId> {
    if slug.as_str() == "global" {
        return Err(UsageError("`global` is reserved: use --global".into()).into());
    }
    repo::tenants::require_by_slug(&db.app, slug)
        .await
        .map_err(usage_if_invalid)
}

async fn ingest(db: &Database, kb: &KnowledgeBase, args: IngestArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let (tenant, dir) = match (&args.tenant, args.dir) {
        (Some(slug), Some(dir)) => (tenant_id(db, slug).await?, dir),
        (Some(slug), None) => {
            return Err(UsageError(format!(
                "give the directory of {slug}'s articles: wasit kb ingest DIR --tenant {slug}"
            ))
            .into());
        }
        (None, dir) => (
            GLOBAL_TENANT,
            dir.unwrap_or_else(|| PathBuf::from("knowledge-base/articles")),
        ),
    };
    if !dir.is_dir() {
        return Err(UsageError(format!(
            "{} is not a directory of articles (give DIR, e.g. knowledge-base/articles)",
            dir.display()
        ))
        .into());
    }
    let files = markdown_files(&dir).with_context(|| format!("cannot read {}", dir.display()))?;
    if files.is_empty() {
        // Mirroring an empty directory would remove every article: a mistyped path must not.
        return Err(UsageError(format!(
            "no *.md articles below {}; nothing was changed",
            dir.display()
        ))
        .into());
    }
    let bar = Bar::new("reading");
    let (mut created, mut updated, mut unchanged) = (0, 0, 0);
    let mut failed = Vec::new();
    let mut seen = Vec::new();
    for (i, path) in files.iter().enumerate() {
        bar.indexed(i, files.len(), 0);
        // A file that does not parse keeps its previous version: its source counts as seen.
        seen.push(ArticleInput::source_of(&dir, path));
        let article = match Article::load(path) {
            Ok(a) => a,
            Err(e) => {
                failed.push(e.to_string());
                continue;
            }
        };
        match kb
            .put(tenant, &ArticleInput::from_file(&dir, article))
            .await
        {
            Ok((_, Stored::Created)) => created += 1,
            Ok((_, Stored::Updated)) => updated += 1,
            Ok((_, Stored::Unchanged)) => unchanged += 1,
            Err(knowledge_base::service::KbError::Invalid(m)) => {
                failed.push(format!("{}:1: {m}", path.display()));
            }
            Err(e) => return Err(e.into()),
        }
    }
    bar.indexed(files.len(), files.len(), 0);
    bar.finish();
    let removed = kb.delete_missing(tenant, &seen).await?;
    let bar = Bar::new("indexing");
    let report = kb.sync(&bar).await?;
    bar.finish();
    for f in &failed {
        eprintln!("{f}");
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{} files: {created} new, {updated} changed, {unchanged} unchanged, {} removed, {} failed; \
         indexed {} articles ({} chunks) in {elapsed:.1} s ({:.0} chunks/s)",
        files.len(),
        removed.len(),
        failed.len(),
        report.articles,
        report.chunks,
        report.chunks as f64 / elapsed.max(1e-3),
    );
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "{} files could not be ingested (listed above)",
            failed.len()
        )
    }
}

async fn search(db: &Database, kb: &KnowledgeBase, args: SearchArgs) -> anyhow::Result<()> {
    let tenant = tenant_id(db, &args.tenant).await?;
    // Whatever the last ingest left unindexed is indexed first.
    kb.sync(&()).await?;
    let hits = kb
        .search(tenant, &args.query, usize::from(args.limit))
        .await?;
    let language = match knowledge_base::normalize::detect(&args.query) {
        knowledge_base::normalize::Language::Arabic => "Arabic",
        knowledge_base::normalize::Language::English => "English",
        knowledge_base::normalize::Language::Mixed => "mixed Arabic and English",
        knowledge_base::normalize::Language::Unknown => "no letters",
    };
    eprintln!(
        "query in {language}: {} results (the tenant's own and the global articles)",
        hits.len()
    );
    let mut out = std::io::stdout().lock();
    for (rank, hit) in hits.iter().enumerate() {
        writeln!(
            out,
            "{}\t{:.4}\t{}\t{}",
            rank + 1,
            hit.score,
            hit.title,
            hit.heading_path.join(" › ")
        )?;
        if args.text {
            for line in hit.text.lines() {
                writeln!(out, "    {line}")?;
            }
        }
    }
    Ok(())
}

/// A progress bar on stderr when it is a terminal (count, rate, ETA); silent otherwise.
struct Bar {
    label: &'static str,
    /// What is counted: files, then articles.
    unit: &'static str,
    started: Instant,
    last: Mutex<Option<Instant>>,
    live: bool,
}

impl Bar {
    fn new(label: &'static str) -> Self {
        Self {
            label,
            unit: if label == "reading" {
                "files"
            } else {
                "articles"
            },
            started: Instant::now(),
            last: Mutex::new(None),
            live: std::io::stderr().is_terminal(),
        }
    }

    fn finish(&self) {
        if self.live && self.last.lock().map(|l| l.is_some()).unwrap_or(false) {
            eprintln!();
        }
    }
}

impl Progress for Bar {
    fn indexed(&self, done: usize, total: usize, chunks: usize) {
        if !self.live || total == 0 {
            return;
        }
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if done < total && last.is_some_and(|l| now - l < Duration::from_millis(100)) {
            return;
        }
        *last = Some(now);
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-3);
        let width = 30;
        let filled = width * done / total;
        let rate = done as f64 / elapsed;
        let eta = if done == 0 {
            "?".to_owned()
        } else {
            format!("{:.0}s", (total - done) as f64 / rate)
        };
        let chunks = if chunks > 0 {
            format!(
                " · {chunks} chunks · {:.0} chunks/s",
                chunks as f64 / elapsed
            )
        } else {
            String::new()
        };
        eprint!(
            "\r{:<9} [{}{}] {done}/{total} {}{chunks} · ETA {eta}   ",
            self.label,
            "#".repeat(filled),
            " ".repeat(width - filled),
            self.unit,
        );
        let _ = std::io::stderr().flush();
    }
}
