//! The embedded development model: what `wasit` talks to when `LLM_BASE_URL` is unset, so that
//! everything works offline on one machine. It is SmolLM2-135M-Instruct — English only, invents
//! facts — for development and tests, never for customers.
//!
//! Code map:
//! - [`engine`]: the forward pass, a llama-architecture transformer over the GGUF file's own
//!   quantised blocks (AVX2 kernels, rows split over the cores). Its own crate once, so that
//!   unoptimised test builds still run it optimised: the workspace's dev profile builds this
//!   whole crate at `opt-level = 3`.
//! - [`model`]: [`LocalModel`], the [`runtime::llm::ChatModel`] around the engine: the
//!   tokenizer, ChatML prompts, sampling, and tool calls kept well-formed by constrained decoding
//!   ([`runtime::llm::grammar`]).
//!
//! [`llm_from_settings`] chooses the provider for a process: the OpenAI-compatible endpoint when
//! one is configured, else this model.
//!
//! Architecture invariant: `runtime` does not depend on this crate; only the binary's wiring
//! (`api`) and this crate's own tests and benchmarks load the model.

pub mod engine;
pub mod model;

use std::sync::Arc;

use runtime::Settings;
use runtime::llm::{Llm, LlmError, PriceTable};

pub use model::{LocalConfig, LocalModel, MODEL_FILE, MODEL_NAME, model_path};

/// The model the settings ask for: the OpenAI-compatible endpoint at `LLM_BASE_URL`, or else the
/// embedded model (loaded on a blocking thread, in under a second).
pub async fn llm_from_settings(settings: &Settings) -> Result<Llm, LlmError> {
    if let Some(llm) = Llm::endpoint_from_settings(settings).await? {
        return Ok(llm);
    }
    let prices = PriceTable::from_settings(settings)?;
    let path = model_path(settings);
    let config = LocalConfig::from_settings(settings);
    let model = tokio::task::spawn_blocking(move || LocalModel::load(&path, config))
        .await
        .map_err(|e| LlmError::NotConfigured(format!("loading the local model: {e}")))??;
    Ok(Llm::new(Arc::new(model), None, prices))
}
