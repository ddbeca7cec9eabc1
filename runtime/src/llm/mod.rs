//! Language models behind one trait, [`ChatModel`], with two implementations:
//!
//! - [`openai::OpenAiProvider`]: any OpenAI-compatible endpoint (`LLM_BASE_URL`) through
//!   async-openai: tools (parallel calls included), streaming, a timeout per call, retries on
//!   429/5xx/timeouts that honour `Retry-After` with capped, jittered backoff, and a circuit
//!   breaker per endpoint ([`resilience`]); `/embeddings` through the same client.
//! - the embedded development default when `LLM_BASE_URL` is unset lives in its own crate
//!   (`local-model`: SmolLM2-135M-Instruct run in process), with tool calls made well-formed by
//!   constrained decoding against the grammar here ([`grammar`]).
//!
//! [`Llm`] is the handle agents hold: the provider plus the model choice (settings, then per
//! tenant and per agent overrides) and its price table. [`tokens`] counts tokens the way the
//! chosen model does and fits a turn's context into the model's window.

pub mod grammar;
pub mod openai;
pub mod resilience;
pub mod tokens;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::settings::Settings;
pub use tokens::TokenCounter;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Text as it is generated, in pieces that each end on a whole UTF-8 character.
pub type TextSink = tokio::sync::mpsc::UnboundedSender<String>;

/// One message of a conversation as the model sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatMessage {
    User(String),
    Assistant {
        text: Option<String>,
        tool_calls: Vec<ToolCall>,
    },
    Tool {
        call_id: String,
        content: String,
    },
}

/// A tool offered to the model: a function with a JSON-schema for its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as the model wrote them: JSON text, not yet validated.
    pub arguments: String,
}

/// Whether the model may, must or must not call a tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ToolChoice {
    #[default]
    Auto,
    /// A tool call is required (a scripted step of an agent's flow).
    Required,
    None,
}

#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// The model to use; `None` is the provider's default.
    pub model: Option<String>,
    pub system: String,
    pub messages: Vec<ChatMessage>,
    pub tools: Vec<ToolSpec>,
    pub tool_choice: ToolChoice,
    pub temperature: f32,
    pub max_output_tokens: u32,
}

#[derive(Debug, Clone)]
pub struct ChatResponse {
    pub text: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    pub tokens_in: u32,
    pub tokens_out: u32,
    pub model: String,
    pub latency: Duration,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LlmError {
    #[error("the model did not answer within {0:?}")]
    Timeout(Duration),
    /// Transport errors, 429 and 5xx (after the provider's own retries): worth retrying later.
    #[error("the model is unavailable: {0}")]
    Unavailable(String),
    /// The endpoint failed repeatedly; calls fail fast until the breaker lets a probe through.
    #[error("the model endpoint {endpoint} is failing; calls resume in {retry_in:?}")]
    CircuitOpen {
        endpoint: String,
        retry_in: Duration,
    },
    /// The request was refused (4xx) or the answer unusable: retrying the same request won't help.
    #[error("the model rejected the request: {0}")]
    Rejected(String),
    #[error("no language model is available: {0}")]
    NotConfigured(String),
}

impl LlmError {
    /// Whether a later attempt may succeed.
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            Self::Timeout(_) | Self::Unavailable(_) | Self::CircuitOpen { .. }
        )
    }
}

/// A language model provider.
pub trait ChatModel: Send + Sync + 'static {
    /// For logs: what this is and where it runs.
    fn describe(&self) -> String;
    /// The model used when a request names none.
    fn default_model(&self) -> &str;
    /// Whether requests may pick another model by name (the embedded model is just one).
    fn selects_models(&self) -> bool;
    /// One chat completion. With `stream`, text is sent there as it is generated; the response
    /// still carries the whole text.
    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
        stream: Option<TextSink>,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>>;
    /// Embeddings of `inputs`, one vector each.
    fn embed<'a>(
        &'a self,
        model: &'a str,
        inputs: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, LlmError>>;
    /// Counts tokens the way `model` does.
    fn counter(&self, model: &str) -> Arc<dyn TokenCounter>;
    /// The model's context window, in tokens.
    fn context_window(&self, model: &str) -> u32;
}

/// Price of a model, in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

impl Price {
    /// The cost of a call in micro-dollars (millionths of a dollar), rounded up.
    pub fn cost_micros(&self, tokens_in: u32, tokens_out: u32) -> i64 {
        let dollars = f64::from(tokens_in) * self.input_per_mtok / 1e6
            + f64::from(tokens_out) * self.output_per_mtok / 1e6;
        (dollars * 1e6).ceil() as i64
    }
}

/// Per-model prices: `LLM_PRICES` (`model=input/output,…`, dollars per million tokens) over
/// built-in list prices for common models. Unknown models cost nothing (and are counted in tokens).
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    prices: HashMap<String, Price>,
}

impl TenantLlmSettings {
    /// Every key, for the API's check of what it is given.
    pub const KEYS: &[&str] = &[
        "model",
        "agent_models",
        "daily_tokens",
        "monthly_tokens",
        "daily_cost_usd",
        "monthly_cost_usd",
    ];
}

impl PriceTable {
    const BUILT_IN: &[(&str, f64, f64)] = &[
        ("gpt-4o-mini", 0.15, 0.60),
        ("gpt-4o", 2.50, 10.00),
        ("gpt-4.1", 2.00, 8.00),
        ("gpt-4.1-mini", 0.40, 1.60),
        ("gpt-4.1-nano", 0.10, 0.40),
        ("gpt-3.5-turbo", 0.50, 1.50),
        ("text-embedding-3-small", 0.02, 0.0),
        ("text-embedding-3-large", 0.13, 0.0),
    ];

    /// The table `LLM_PRICES` describes.
    pub fn from_settings(settings: &Settings) -> Result<Self, LlmError> {
        Self::parse(settings.llm_prices.as_deref()).map_err(LlmError::NotConfigured)
    }

    /// Parses `model=input/output` pairs separated by commas over the built-in list.
    pub fn parse(spec: Option<&str>) -> Result<Self, String> {
        let mut prices: HashMap<String, Price> = Self::BUILT_IN
            .iter()
            .map(|(m, i, o)| {
                (
                    (*m).to_owned(),
                    Price {
                        input_per_mtok: *i,
                        output_per_mtok: *o,
                    },
                )
            })
            .collect();
        for entry in spec
            .unwrap_or("")
            .split(',')
            .filter(|e| !e.trim().is_empty())
        {
            let bad = || {
                format!(
                    "LLM_PRICES entry {entry:?} is not model=INPUT/OUTPUT (dollars per million tokens, e.g. gpt-4o-mini=0.15/0.60)"
                )
            };
            let (model, rates) = entry.split_once('=').ok_or_else(bad)?;
            let (input, output) = rates.split_once('/').ok_or_else(bad)?;
            let parse = |v: &str| {
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|p| p.is_finite() && *p >= 0.0)
            };
            let price = Price {
                input_per_mtok: parse(input).ok_or_else(bad)?,
                output_per_mtok: parse(output).ok_or_else(bad)?,
            };
            prices.insert(model.trim().to_owned(), price);
        }
        Ok(Self { prices })
    }

    /// The price of `model`; a dated snapshot (`gpt-4o-mini-2024-07-18`, as endpoints report
    /// the model they ran) costs what its undated name costs unless listed itself.
    pub fn price(&self, model: &str) -> Price {
        if let Some(p) = self.prices.get(model) {
            return *p;
        }
        let mut parts: Vec<&str> = model.rsplitn(4, '-').collect();
        parts.reverse();
        match parts.as_slice() {
            [base, y, m, d]
                if y.len() == 4
                    && m.len() == 2
                    && d.len() == 2
                    && [y, m, d]
                        .iter()
                        .all(|p| p.bytes().all(|b| b.is_ascii_digit())) =>
            {
                self.prices.get(*base).copied().unwrap_or_default()
            }
            _ => Price::default(),
        }
    }
}

/// Model choice for one tenant, from `tenants.settings -> 'llm'`.
/// Reading is lenient (a key this version does not know never drops the caps); the API refuses
/// unknown keys on write ([`TenantLlmSettings::KEYS`]).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct TenantLlmSettings {
    /// The tenant's model for every agent.
    pub model: Option<String>,
    /// Per agent kind, over `model`.
    pub agent_models: HashMap<String, String>,
    /// Caps; `None` is unlimited.
    pub daily_tokens: Option<i64>,
    pub monthly_tokens: Option<i64>,
    pub daily_cost_usd: Option<f64>,
    pub monthly_cost_usd: Option<f64>,
}

/// The handle agents hold: a provider and how to choose its model.
#[derive(Clone)]
pub struct Llm {
    provider: Arc<dyn ChatModel>,
    /// `LLM_MODEL`, or the provider's default.
    model: String,
    prices: Arc<PriceTable>,
}

impl std::fmt::Debug for Llm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llm")
            .field("provider", &self.provider.describe())
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl Llm {
    pub fn new(provider: Arc<dyn ChatModel>, model: Option<&str>, prices: PriceTable) -> Self {
        let model = model
            .filter(|_| provider.selects_models())
            .unwrap_or(provider.default_model())
            .to_owned();
        Self {
            provider,
            model,
            prices: Arc::new(prices),
        }
    }

    /// The OpenAI-compatible endpoint at `LLM_BASE_URL`, or `None` when it is unset (the binary
    /// then runs the embedded model of the `local-model` crate).
    pub async fn endpoint_from_settings(settings: &Settings) -> Result<Option<Self>, LlmError> {
        if settings.llm_base_url.is_none() {
            return Ok(None);
        }
        let prices = PriceTable::from_settings(settings)?;
        let provider = openai::OpenAiProvider::from_settings(settings)?;
        let llm = Self::new(Arc::new(provider), settings.llm_model.as_deref(), prices);
        // Build the default model's encoding now (a large table), not in the first turn.
        let counter = llm.counter(&llm.model);
        let _ = tokio::task::spawn_blocking(move || counter.count("warm up")).await;
        Ok(Some(llm))
    }

    pub fn provider(&self) -> &Arc<dyn ChatModel> {
        &self.provider
    }

    /// The model a turn of `agent` for a tenant uses: the tenant's per-agent choice, the
    /// tenant's model, the agent's prompt file, then `LLM_MODEL`. The embedded model is the only
    /// choice when it is the provider.
    pub fn model_for(
        &self,
        tenant: &TenantLlmSettings,
        agent: &str,
        prompt_model: Option<&str>,
    ) -> String {
        if !self.provider.selects_models() {
            return self.model.clone();
        }
        tenant
            .agent_models
            .get(agent)
            .or(tenant.model.as_ref())
            .map(String::as_str)
            .or(prompt_model)
            .unwrap_or(&self.model)
            .to_owned()
    }

    pub fn default_model(&self) -> &str {
        &self.model
    }

    pub fn price(&self, model: &str) -> Price {
        self.prices.price(model)
    }

    pub fn counter(&self, model: &str) -> Arc<dyn TokenCounter> {
        self.provider.counter(model)
    }

    pub fn context_window(&self, model: &str) -> u32 {
        self.provider.context_window(model)
    }

    pub async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        self.provider.chat(request, None).await
    }

    pub async fn chat_streaming(
        &self,
        request: &ChatRequest,
        sink: TextSink,
    ) -> Result<ChatResponse, LlmError> {
        self.provider.chat(request, Some(sink)).await
    }

    pub async fn embed(&self, model: &str, inputs: &[String]) -> Result<Vec<Vec<f32>>, LlmError> {
        self.provider.embed(model, inputs).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_parse_over_the_built_in_list_and_cost_rounds_up() {
        let table = PriceTable::parse(Some("local=0/0, gpt-4o-mini=1/2")).unwrap();
        assert_eq!(table.price("gpt-4o-mini").input_per_mtok, 1.0);
        assert_eq!(table.price("gpt-4o").output_per_mtok, 10.0);
        assert_eq!(table.price("unknown"), Price::default());
        assert_eq!(table.price("gpt-4o-2024-08-06"), table.price("gpt-4o"));
        assert_eq!(table.price("gpt-4o-mini-2024-07-18").input_per_mtok, 1.0);
        assert_eq!(table.price("gpt-4o-x-2024"), Price::default());
        // 1,000 in at $1/M + 500 out at $2/M = $0.002 = 2,000 micro-dollars.
        assert_eq!(table.price("gpt-4o-mini").cost_micros(1000, 500), 2000);
        let err = PriceTable::parse(Some("gpt-4o=cheap")).unwrap_err();
        assert!(err.contains("LLM_PRICES"), "{err}");
        assert!(PriceTable::parse(Some("m=-1/2")).is_err());
    }

    #[test]
    fn tenant_settings_keep_their_caps_beside_unknown_keys() {
        let s: TenantLlmSettings = serde_json::from_value(
            serde_json::json!({"model": "gpt-4o", "daily_tokens": 10, "from_a_newer_version": 1}),
        )
        .unwrap();
        assert_eq!(s.daily_tokens, Some(10));
        assert_eq!(TenantLlmSettings::KEYS.len(), 6);
    }
}
