//! Prompt files: `prompts/<kind>.md`, and `prompts/tenants/<slug>/<kind>.md` overriding one
//! agent for one tenant. TOML front matter between `+++` lines, then the system prompt as a
//! minijinja template. A file's version is the SHA-256 of its bytes.
//!
//! Loading validates everything a prompt engineer can get wrong and reports it as
//! `file:line: message`, so a bad edit is rejected with a reason and the last good version stays.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The front matter of a prompt file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FrontMatter {
    pub agent: String,
    pub description: String,
    #[serde(default = "default_temperature")]
    pub temperature: f32,
    #[serde(default = "default_max_output_tokens")]
    pub max_output_tokens: u32,
    #[serde(default)]
    pub tools: Vec<String>,
    #[serde(default)]
    pub escalation: Escalation,
    /// The model for this agent, unless the tenant chooses one (`tenants.settings.llm`).
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub routing: Routing,
}

/// When the agent router gives this agent the conversation.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    /// Words or phrases (matched Arabic-aware: diacritics, letter forms and digits normalised)
    /// that bring a contact's message to this agent, e.g. `["ضمان", "استرداد", "refund"]`.
    #[serde(default)]
    pub keywords: Vec<String>,
}

fn default_temperature() -> f32 {
    0.3
}

fn default_max_output_tokens() -> u32 {
    400
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Escalation {
    #[serde(default)]
    pub keywords: Vec<String>,
    pub max_turns_without_progress: Option<u32>,
}

/// A loaded, validated prompt file.
#[derive(Clone)]
pub struct Prompt {
    pub path: PathBuf,
    pub front: FrontMatter,
    /// The template source (everything after the front matter).
    pub template: String,
    /// Hex SHA-256 of the file's bytes.
    pub version: String,
    /// The file's path relative to the prompts directory (`sales.md`, `tenants/acme/sales.md`).
    pub name: String,
    /// The whole file, as recorded in `prompt_versions`.
    pub source: Arc<str>,
    env: Arc<minijinja::Environment<'static>>,
}

impl fmt::Debug for Prompt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prompt")
            .field("path", &self.path)
            .field("agent", &self.front.agent)
            .field("version", &self.version)
            .finish()
    }
}

/// A problem with a prompt file, located for the person who edits it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {message}", path.display())]
pub struct PromptError {
    pub path: PathBuf,
    pub line: usize,
    pub message: String,
}

impl Prompt {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Self, PromptError> {
        let bytes = std::fs::read(path).map_err(|e| PromptError {
            path: path.to_owned(),
            line: 1,
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(path, &bytes)
    }

    /// Validates prompt file contents; `path` is used for messages and for the expected agent name.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, PromptError> {
        let err = |line: usize, message: String| PromptError {
            path: path.to_owned(),
            line,
            message,
        };
        let split = runtime::front_matter::split(bytes, "a prompt file")
            .map_err(|(line, message)| err(line, message))?;
        let front: FrontMatter = toml::from_str(&split.front).map_err(|e| {
            let line = e.span().map_or(2, |s| split.line_at(s.start));
            err(line, format!("front matter: {}", e.message()))
        })?;
        let front_line = |key: &str| split.line_of(key);
        let template = split.body.clone();
        let closing_line = split.body_line - 1;
        if let Some(stem) = path.file_stem().and_then(|s| s.to_str())
            && stem != front.agent
        {
            return Err(err(
                front_line("agent"),
                format!("agent = {:?} but the file is named {stem}.md", front.agent),
            ));
        }
        if !(0.0..=2.0).contains(&front.temperature) {
            return Err(err(
                front_line("temperature"),
                format!("temperature {} is outside 0.0..=2.0", front.temperature),
            ));
        }
        if !(1..=16_384).contains(&front.max_output_tokens) {
            return Err(err(
                front_line("max_output_tokens"),
                "max_output_tokens must be between 1 and 16384".into(),
            ));
        }
        if let Some(model) = &front.model
            && (model.trim().is_empty() || model.len() > 200 || model.trim() != model)
        {
            return Err(err(
                front_line("model"),
                "model must be a model name (1 to 200 characters, no surrounding spaces)".into(),
            ));
        }
        for tool in &front.tools {
            if crate::tools::find(tool).is_none() {
                return Err(err(
                    front_line("tools"),
                    format!(
                        "unknown tool {tool:?}; known tools: {}",
                        crate::tools::names().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }

        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
        env.add_template_owned("prompt", template.clone())
            .map_err(|e| {
                err(
                    closing_line + e.line().unwrap_or(1),
                    format!("template: {}", e.detail().unwrap_or(&e.to_string())),
                )
            })?;
        Ok(Self {
            path: path.to_owned(),
            front,
            template,
            version: hex::encode(Sha256::digest(bytes)),
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            source: String::from_utf8_lossy(bytes).into(),
            env: Arc::new(env),
        })
    }

    /// The variables the template reads, with their fields (`tenant.name`), not counting those
    /// it sets itself (loop variables, `set`).
    pub fn variables(&self) -> std::collections::HashSet<String> {
        let template = self.env.get_template("prompt").expect("added at load");
        template.undeclared_variables(true)
    }

    /// Renders the system prompt with `context` (tenant, contact, history, …).
    pub fn render(&self, context: &serde_json::Value) -> Result<String, PromptError> {
        let template = self.env.get_template("prompt").expect("added at load");
        template
            .render(context)
            .map(|s| s.trim().to_owned())
            .map_err(|e| PromptError {
                path: self.path.clone(),
                line: e.line().unwrap_or(0),
                message: format!("render: {e}"),
            })
    }
}

/// The prompt files of `dir`, sorted: `(None, path)` for `dir/*.md` and `(Some(slug), path)`
/// for the overrides in `dir/tenants/<slug>/*.md` (a `README.md` is documentation).
pub fn prompt_files(dir: &Path) -> Vec<(Option<String>, PathBuf)> {
    let entries = |d: &Path| -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        paths.sort();
        paths
    };
    let is_prompt = |p: &PathBuf| {
        p.extension().is_some_and(|e| e == "md") && p.file_name().is_some_and(|n| n != "README.md")
    };
    let mut files: Vec<(Option<String>, PathBuf)> = entries(dir)
        .into_iter()
        .filter(is_prompt)
        .map(|p| (None, p))
        .collect();
    for tenant_dir in entries(&dir.join("tenants"))
        .into_iter()
        .filter(|p| p.is_dir())
    {
        let slug = tenant_dir
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        files.extend(
            entries(&tenant_dir)
                .into_iter()
                .filter(is_prompt)
                .map(|p| (Some(slug.clone()), p)),
        );
    }
    files
}

fn relative_name(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

fn load_named(dir: &Path, path: &Path) -> Result<Prompt, PromptError> {
    let mut p = Prompt::load(path)?;
    p.name = relative_name(dir, path);
    Ok(p)
}

/// How often a running system reads the prompt files again ([`PromptStore::watch`]): an edit is
/// live within this, plus the time to parse it.
pub const RELOAD_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// The live prompt files of a directory: what every turn reads, swapped whole when a file changes
/// ([`PromptStore::refresh`], run by [`PromptStore::watch`]).
#[derive(Debug)]
pub struct PromptStore {
    dir: PathBuf,
    current: std::sync::RwLock<Arc<PromptSet>>,
}

impl PromptStore {
    /// Loads `dir`; every file must be valid to start.
    pub fn load(dir: &Path) -> Result<Self, Vec<PromptError>> {
        Ok(Self::new(dir, PromptSet::load_dir(dir)?))
    }

    pub fn new(dir: &Path, set: PromptSet) -> Self {
        Self {
            dir: dir.to_owned(),
            current: std::sync::RwLock::new(Arc::new(set)),
        }
    }

    /// The prompts as they are now.
    pub fn current(&self) -> Arc<PromptSet> {
        self.current.read().expect("prompt store lock").clone()
    }

    /// Reads the directory again and swaps in what changed; an invalid edit is logged as
    /// `file:line: reason` and its last good version stays. Returns the errors.
    pub fn refresh(&self) -> Vec<PromptError> {
        let Some((next, errors)) = self.current().reread(&self.dir) else {
            return Vec::new();
        };
        for e in &errors {
            tracing::error!("{e} (the last good version of this prompt stays in use)");
        }
        let old = std::mem::replace(
            &mut *self.current.write().expect("prompt store lock"),
            Arc::new(next),
        );
        for (_, p) in self.current().all() {
            if old.all().all(|(_, o)| o.version != p.version) {
                tracing::info!(file = p.name, version = &p.version[..12], "prompt reloaded");
            }
        }
        errors
    }

    /// Refreshes every `interval` until the returned task is aborted.
    pub fn watch(self: &Arc<Self>, interval: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let store = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(store) = store.upgrade() else { return };
                // File reads and parsing are blocking work.
                if tokio::task::spawn_blocking(move || store.refresh())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        })
    }
}

/// All prompt files of a directory: one per agent kind, plus per-tenant overrides.
#[derive(Debug, Clone, Default)]
pub struct PromptSet {
    base: BTreeMap<String, Arc<Prompt>>,
    tenants: BTreeMap<(String, String), Arc<Prompt>>,
}

impl PromptSet {
    /// Loads `dir/*.md` and `dir/tenants/<slug>/*.md` (a `README.md` is documentation, not a
    /// prompt). Returns every error found, not just the first.
    pub fn load_dir(dir: &Path) -> Result<Self, Vec<PromptError>> {
        let mut set = Self::default();
        let mut errors = Vec::new();
        if !dir.is_dir() {
            return Err(vec![PromptError {
                path: dir.to_owned(),
                line: 0,
                message: "not a directory".into(),
            }]);
        }
        for (slug, path) in prompt_files(dir) {
            match load_named(dir, &path) {
                Ok(p) => set.insert(slug, Arc::new(p)),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(errors)
        }
    }

    fn insert(&mut self, slug: Option<String>, prompt: Arc<Prompt>) {
        let agent = prompt.front.agent.clone();
        match slug {
            None => self.base.insert(agent, prompt),
            Some(slug) => self.tenants.insert((slug, agent), prompt),
        };
    }

    /// Every prompt, with the tenant whose override it is.
    fn all(&self) -> impl Iterator<Item = (Option<&str>, &Arc<Prompt>)> {
        self.base.values().map(|p| (None, p)).chain(
            self.tenants
                .iter()
                .map(|((slug, _), p)| (Some(slug.as_str()), p)),
        )
    }

    /// `dir` read again: files whose bytes changed are loaded anew, and a file that no longer
    /// loads keeps its last good version (its error is returned). `None` when nothing changed.
    pub fn reread(&self, dir: &Path) -> Option<(Self, Vec<PromptError>)> {
        let mut loaded: BTreeMap<&Path, &Arc<Prompt>> =
            self.all().map(|(_, p)| (p.path.as_path(), p)).collect();
        let mut next = Self::default();
        let mut errors = Vec::new();
        let mut changed = false;
        for (slug, path) in prompt_files(dir) {
            let previous = loaded.remove(path.as_path());
            let Ok(bytes) = std::fs::read(&path) else {
                // Mid-rename, or gone: keep what was loaded.
                if let Some(p) = previous {
                    next.insert(slug, p.clone());
                }
                continue;
            };
            let version = hex::encode(Sha256::digest(&bytes));
            match previous {
                Some(p) if p.version == version => next.insert(slug, p.clone()),
                previous => {
                    changed = true;
                    match Prompt::parse(&path, &bytes) {
                        Ok(mut p) => {
                            p.name = relative_name(dir, &path);
                            next.insert(slug, Arc::new(p));
                        }
                        Err(e) => {
                            errors.push(e);
                            if let Some(p) = previous {
                                next.insert(slug, p.clone());
                            }
                        }
                    }
                }
            }
        }
        // Files that were removed.
        changed |= !loaded.is_empty();
        changed.then_some((next, errors))
    }

    /// The prompt for `agent`, the tenant's override first.
    pub fn get(&self, tenant_slug: &str, agent: &str) -> Option<Arc<Prompt>> {
        self.tenants
            .get(&(tenant_slug.to_owned(), agent.to_owned()))
            .or_else(|| self.base.get(agent))
            .cloned()
    }

    pub fn agents(&self) -> impl Iterator<Item = &str> {
        self.base.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(name: &str, text: &str) -> Result<Prompt, PromptError> {
        Prompt::parse(Path::new(name), text.as_bytes())
    }

    #[test]
    fn the_shipped_sales_prompt_loads_and_renders_arabic() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../prompts");
        let set = PromptSet::load_dir(&dir).expect("shipped prompts are valid");
        let sales = set.get("any-tenant", "sales").expect("sales prompt");
        assert_eq!(
            sales.front.tools,
            [
                "search_knowledge",
                "update_lead",
                "create_deal",
                "handoff",
                "escalate"
            ]
        );
        assert_eq!(sales.version.len(), 64);
        let text = sales
            .render(&json!({"tenant": {"name": "ذهب الرياض"}, "contact": {"name": "سارة"}}))
            .unwrap();
        assert!(
            text.starts_with("أنت مساعد المبيعات لدى ذهب الرياض."),
            "{text}"
        );
        assert!(text.contains("The contact's name is سارة."));
    }

    #[test]
    fn errors_point_at_the_file_and_line() {
        let e = parse("sales.md", "no front matter").unwrap_err();
        assert_eq!(
            (e.line, e.to_string().starts_with("sales.md:1:")),
            (1, true)
        );

        let e = parse(
            "sales.md",
            "+++\nagent = \"sales\"\ndescription = \"x\"\ntools = [\"fly\"]\n+++\nhi",
        )
        .unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("unknown tool \"fly\""), "{e}");

        let e = parse(
            "sales.md",
            "+++\nagent = \"qualifier\"\ndescription = \"x\"\n+++\nhi",
        )
        .unwrap_err();
        assert!(e.message.contains("file is named sales.md"), "{e}");

        let e = parse(
            "sales.md",
            "+++\nagent = \"sales\"\ndescription = \"x\"\ntemperature = \"hot\"\n+++\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 4, "{e}");

        let e = parse(
            "sales.md",
            "+++\nagent = \"sales\"\ndescription = \"x\"\n+++\nline one\n{% if %}\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 6, "{e}");

        let e = parse(
            "sales.md",
            "+++\nagent = \"sales\"\ndescription = \"x\"\ncolour = 1\n+++\n",
        )
        .unwrap_err();
        assert!(e.message.contains("colour"), "{e}");
    }

    #[test]
    fn tenant_overrides_win_and_versions_follow_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let write = |rel: &str, body: &str| {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(
                p,
                format!("+++\nagent = \"sales\"\ndescription = \"d\"\n+++\n{body}"),
            )
            .unwrap();
        };
        write("sales.md", "base");
        write("tenants/acme/sales.md", "acme");
        let set = PromptSet::load_dir(dir.path()).unwrap();
        assert_eq!(
            set.get("acme", "sales")
                .unwrap()
                .render(&json!({}))
                .unwrap(),
            "acme"
        );
        assert_eq!(
            set.get("other", "sales")
                .unwrap()
                .render(&json!({}))
                .unwrap(),
            "base"
        );
        assert_ne!(
            set.get("acme", "sales").unwrap().version,
            set.get("other", "sales").unwrap().version
        );
    }
}
