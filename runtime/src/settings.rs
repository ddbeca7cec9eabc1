//! Typed settings, read once from the environment in `main`.
//!
//! Every variable of the outward contract (docs: `shared/design/interfaces.md`, README) is here with
//! its default. Secrets are [`SecretString`]: the derived `Debug` prints `[REDACTED]` for them, so
//! logging the settings is safe. A malformed value is an error that names the variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use secrecy::SecretString;

use crate::error::{Error, Result};

/// Where the Meta Graph API lives unless `WHATSAPP_GRAPH_URL` says otherwise.
pub const DEFAULT_WHATSAPP_GRAPH_URL: &str = "https://graph.facebook.com/v23.0";
/// Where Twilio's REST API lives unless `TWILIO_API_URL` says otherwise.
pub const DEFAULT_TWILIO_API_URL: &str = "https://api.twilio.com";
/// The listen address unless `WASIT_HTTP_ADDR` says otherwise.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";

#[derive(Clone, Debug)]
pub struct Settings {
    /// An external PostgreSQL server; `None` means the embedded cluster under `data_dir`.
    pub database_url: Option<SecretString>,
    /// Optional separate login for the application pool (a role that is only a member of
    /// `wasit_app`); unset means the `DATABASE_URL` credentials followed by `SET ROLE wasit_app`.
    pub app_database_url: Option<SecretString>,
    /// Where embedded state lives: the private PostgreSQL cluster, generated secrets.
    pub data_dir: PathBuf,
    pub http_addr: SocketAddr,
    /// HS256 key for tokens; `None` means the key generated once into `data_dir`.
    pub jwt_secret: Option<SecretString>,
    pub redis_url: Option<SecretString>,
    pub qdrant_url: Option<String>,
    pub llm_base_url: Option<String>,
    pub llm_api_key: Option<SecretString>,
    pub llm_model: Option<String>,
    /// The knowledge base's dense embeddings (`EMBEDDING_MODEL`), served by `LLM_BASE_URL`'s
    /// `/embeddings`; unset: retrieval is BM25 alone.
    pub embedding_model: Option<String>,
    /// Per attempt of a model call (`LLM_TIMEOUT_SECS`, 60).
    pub llm_timeout: std::time::Duration,
    /// The model's context window, when its name does not tell (`LLM_CONTEXT_WINDOW`).
    pub llm_context_window: Option<u32>,
    /// Prices per model over the built-in list (`LLM_PRICES`, `model=in/out,…` in dollars per
    /// million tokens).
    pub llm_prices: Option<String>,
    /// The embedded model's GGUF (`WASIT_LOCAL_MODEL`); default `<data dir>/models/…`.
    pub local_model: Option<PathBuf>,
    pub whatsapp_app_secret: Option<SecretString>,
    pub whatsapp_verify_token: Option<SecretString>,
    pub whatsapp_graph_url: String,
    pub twilio_api_url: String,
    pub smtp_url: Option<SecretString>,
    /// Where the prompt files are (`WASIT_PROMPTS_DIR`).
    pub prompts_dir: PathBuf,
    /// Burst window before a turn starts (`WASIT_DEBOUNCE_MS`).
    pub debounce: std::time::Duration,
    /// Idle time before a conversation actor is passivated (`WASIT_IDLE_SECS`).
    pub idle_timeout: std::time::Duration,
    /// Messages per second per WhatsApp business number (`WASIT_WHATSAPP_RATE`): 80 by default,
    /// 1000 for upgraded numbers, 20 for numbers shared with the WhatsApp Business app.
    pub whatsapp_rate: u64,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Reads settings through `lookup`, so tests can supply an environment of their own.
    /// Empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |key: &str| lookup(key).filter(|v| !v.trim().is_empty());
        let secret = |key: &str| get(key).map(SecretString::from);

        let http_addr_raw = get("WASIT_HTTP_ADDR").unwrap_or_else(|| DEFAULT_HTTP_ADDR.to_owned());
        let http_addr = http_addr_raw.parse().map_err(|_| {
            Error::Config(format!(
                "WASIT_HTTP_ADDR={http_addr_raw:?} is not a socket address; use HOST:PORT such as 127.0.0.1:8080"
            ))
        })?;

        let number = |key: &str, default: u64| -> Result<u64> {
            match get(key) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse()
                    .map_err(|_| Error::Config(format!("{key}={v:?} is not a whole number"))),
            }
        };
        let url = |key: &str| -> Result<Option<String>> {
            match get(key) {
                None => Ok(None),
                Some(v) => url::Url::parse(&v)
                    .map(|_| Some(v.trim_end_matches('/').to_owned()))
                    .map_err(|e| Error::Config(format!("{key} is not a valid URL ({e})"))),
            }
        };

        for key in ["DATABASE_URL", "WASIT_APP_DATABASE_URL"] {
            if let Some(db) = get(key)
                && !(db.starts_with("postgres://") || db.starts_with("postgresql://"))
            {
                return Err(Error::Config(format!(
                    "{key} must start with postgres:// or postgresql://"
                )));
            }
        }
        if get("WASIT_APP_DATABASE_URL").is_some() && get("DATABASE_URL").is_none() {
            return Err(Error::Config(
                "WASIT_APP_DATABASE_URL needs DATABASE_URL (the embedded cluster makes its own)"
                    .to_owned(),
            ));
        }
        if let Some(secret) = get("WASIT_JWT_SECRET")
            && secret.len() < 32
        {
            return Err(Error::Config(
                "WASIT_JWT_SECRET must be at least 32 bytes; generate one with `openssl rand -hex 32`"
                    .to_owned(),
            ));
        }

        Ok(Self {
            database_url: secret("DATABASE_URL"),
            app_database_url: secret("WASIT_APP_DATABASE_URL"),
            data_dir: PathBuf::from(get("WASIT_DATA_DIR").unwrap_or_else(|| "./.wasit".to_owned())),
            http_addr,
            jwt_secret: secret("WASIT_JWT_SECRET"),
            redis_url: secret("REDIS_URL"),
            qdrant_url: url("QDRANT_URL")?,
            llm_base_url: url("LLM_BASE_URL")?,
            llm_api_key: secret("LLM_API_KEY"),
            llm_model: get("LLM_MODEL"),
            embedding_model: get("EMBEDDING_MODEL"),
            llm_timeout: std::time::Duration::from_secs(number("LLM_TIMEOUT_SECS", 60)?.max(1)),
            llm_context_window: match get("LLM_CONTEXT_WINDOW") {
                None => None,
                Some(_) => Some(
                    u32::try_from(number("LLM_CONTEXT_WINDOW", 0)?)
                        .ok()
                        .filter(|w| *w >= 256)
                        .ok_or_else(|| {
                            Error::Config(
                                "LLM_CONTEXT_WINDOW must be a token count between 256 and 4294967295"
                                    .to_owned(),
                            )
                        })?,
                ),
            },
            llm_prices: get("LLM_PRICES"),
            local_model: get("WASIT_LOCAL_MODEL").map(PathBuf::from),
            whatsapp_app_secret: secret("WHATSAPP_APP_SECRET"),
            whatsapp_verify_token: secret("WHATSAPP_VERIFY_TOKEN"),
            whatsapp_graph_url: url("WHATSAPP_GRAPH_URL")?
                .unwrap_or_else(|| DEFAULT_WHATSAPP_GRAPH_URL.to_owned()),
            twilio_api_url: url("TWILIO_API_URL")?
                .unwrap_or_else(|| DEFAULT_TWILIO_API_URL.to_owned()),
            smtp_url: secret("SMTP_URL"),
            prompts_dir: PathBuf::from(
                get("WASIT_PROMPTS_DIR").unwrap_or_else(|| "./prompts".to_owned()),
            ),
            debounce: std::time::Duration::from_millis(number("WASIT_DEBOUNCE_MS", 300)?),
            idle_timeout: std::time::Duration::from_secs(number("WASIT_IDLE_SECS", 120)?),
            whatsapp_rate: number("WASIT_WHATSAPP_RATE", 80)?.max(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings> {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_lookup(|k| env.get(k).cloned())
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let s = settings(&[]).unwrap();
        assert!(s.database_url.is_none());
        assert_eq!(s.data_dir, PathBuf::from("./.wasit"));
        assert_eq!(s.http_addr.to_string(), DEFAULT_HTTP_ADDR);
        assert_eq!(s.whatsapp_graph_url, DEFAULT_WHATSAPP_GRAPH_URL);
    }

    #[test]
    fn debug_never_prints_secrets() {
        let s = settings(&[
            ("DATABASE_URL", "postgres://u:hunter2@db/x"),
            ("WASIT_JWT_SECRET", "jwt-key-123-that-is-long-enough-to-use"),
            ("WHATSAPP_APP_SECRET", "appsecret-xyz"),
            ("LLM_API_KEY", "sk-live-abc"),
        ])
        .unwrap();
        let printed = format!("{s:?}");
        for secret in ["hunter2", "jwt-key-123", "appsecret-xyz", "sk-live-abc"] {
            assert!(!printed.contains(secret), "{secret} leaked in {printed}");
        }
        assert!(printed.contains("REDACTED"));
    }

    #[test]
    fn malformed_values_name_the_variable() {
        let err = settings(&[("WASIT_HTTP_ADDR", "localhost")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("WASIT_HTTP_ADDR"), "{err}");
        let err = settings(&[("DATABASE_URL", "mysql://x")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("DATABASE_URL"), "{err}");
        let err = settings(&[("LLM_BASE_URL", "not a url")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("LLM_BASE_URL"), "{err}");
    }
}
