//! The OpenAI-compatible provider: any chat-completions endpoint (`LLM_BASE_URL`) through
//! async-openai. Every attempt has a timeout; 429, 5xx, transport errors and timeouts are retried
//! by [`RetryPolicy`] (honouring `Retry-After`); a [`CircuitBreaker`] per endpoint fails calls
//! fast while the endpoint keeps failing. async-openai's own retries are off: our HTTP service
//! turns 429/5xx into errors that carry the status and `Retry-After`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use async_openai::types::chat::{
    ChatCompletionMessageToolCall, ChatCompletionMessageToolCalls,
    ChatCompletionRequestAssistantMessageArgs, ChatCompletionRequestMessage,
    ChatCompletionRequestSystemMessageArgs, ChatCompletionRequestToolMessageArgs,
    ChatCompletionRequestUserMessageArgs, ChatCompletionStreamOptions, ChatCompletionTool,
    ChatCompletionToolChoiceOption, ChatCompletionTools, CreateChatCompletionRequest,
    CreateChatCompletionRequestArgs, FunctionCall, FunctionObjectArgs, ToolChoiceOptions,
};
use async_openai::types::embeddings::{CreateEmbeddingRequestArgs, EmbeddingInput};
use futures_util::StreamExt;
use secrecy::ExposeSecret;

use super::resilience::{CircuitBreaker, RetryPolicy, parse_retry_after};
use super::tokens::{TiktokenCounter, TokenCounter};
use super::{
    BoxFuture, ChatMessage, ChatModel, ChatRequest, ChatResponse, LlmError, TextSink, ToolCall,
    ToolChoice,
};
use crate::settings::Settings;

/// The model name sent when `LLM_MODEL` is unset.
pub const DEFAULT_MODEL: &str = "gpt-4o-mini";

/// A chat-completions provider for one endpoint.
pub struct OpenAiProvider {
    client: Client<OpenAIConfig>,
    endpoint: String,
    model: String,
    timeout: Duration,
    policy: RetryPolicy,
    breaker: CircuitBreaker,
    context_window: Option<u32>,
}

impl std::fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("endpoint", &self.endpoint)
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// How the provider behaves; [`Default`] is what `wasit serve` uses.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Per attempt.
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub breaker_threshold: u32,
    pub breaker_cooldown: Duration,
    /// Overrides the model's known context window (`LLM_CONTEXT_WINDOW`).
    pub context_window: Option<u32>,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(30),
            context_window: None,
        }
    }
}

/// A failed attempt: the error, and the server's `Retry-After` if it sent one.
struct Failure {
    error: LlmError,
    retry_after: Option<Duration>,
    /// A 429: the endpoint is up and asks us to slow down.
    rate_limited: bool,
}

impl From<LlmError> for Failure {
    fn from(error: LlmError) -> Self {
        Self {
            error,
            retry_after: None,
            rate_limited: false,
        }
    }
}

impl OpenAiProvider {
    /// The provider for `LLM_BASE_URL`.
    pub fn from_settings(settings: &Settings) -> Result<Self, LlmError> {
        let base = settings
            .llm_base_url
            .as_deref()
            .ok_or_else(|| LlmError::NotConfigured("LLM_BASE_URL is unset".into()))?;
        let key = settings
            .llm_api_key
            .as_ref()
            .map(|k| k.expose_secret().to_owned())
            .unwrap_or_default();
        let config = ProviderConfig {
            timeout: settings.llm_timeout,
            context_window: settings.llm_context_window,
            ..ProviderConfig::default()
        };
        Ok(Self::new(
            base,
            &key,
            settings.llm_model.as_deref().unwrap_or(DEFAULT_MODEL),
            config,
        ))
    }

    pub fn new(base_url: &str, api_key: &str, model: &str, config: ProviderConfig) -> Self {
        // The attempt's timeout is ours (tokio), so a stream is not cut by reqwest mid-way.
        let http = crate::http::client(config.timeout + Duration::from_secs(5));
        let endpoint = base_url.trim_end_matches('/').to_owned();
        let openai = OpenAIConfig::new()
            .with_api_base(&endpoint)
            .with_api_key(api_key);
        let client = Client::build(http.clone(), openai).with_http_service(StatusService { http });
        Self {
            client,
            endpoint,
            model: model.to_owned(),
            timeout: config.timeout,
            policy: config.retry,
            breaker: CircuitBreaker::new(config.breaker_threshold, config.breaker_cooldown),
            context_window: config.context_window,
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn breaker_open(&self) -> bool {
        self.breaker.is_open()
    }

    /// Runs `attempt` under the retry policy and the breaker.
    async fn with_retries<T, F, Fut>(&self, mut attempt: F) -> Result<T, LlmError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, (Failure, bool)>>,
    {
        let mut n = 0;
        loop {
            n += 1;
            if let Err(open) = self.breaker.acquire() {
                return Err(LlmError::CircuitOpen {
                    endpoint: self.endpoint.clone(),
                    retry_in: open.0,
                });
            }
            match attempt().await {
                Ok(value) => {
                    self.breaker.succeeded();
                    return Ok(value);
                }
                Err((failure, retryable)) => {
                    if !failure.error.is_temporary() {
                        // The endpoint answered: a refusal is not an outage.
                        self.breaker.succeeded();
                        return Err(failure.error);
                    }
                    let pause = if retryable {
                        self.policy.pause(n, failure.retry_after)
                    } else {
                        None
                    };
                    let Some(pause) = pause else {
                        // The call failed after its retries: one failure for the breaker, unless
                        // the endpoint only asked us to slow down (429), which is not an outage.
                        if !failure.rate_limited {
                            self.breaker.failed();
                        }
                        return Err(failure.error);
                    };
                    tracing::warn!(endpoint = %self.endpoint, attempt = n, ?pause, error = %failure.error, "model call failed; retrying");
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    async fn once(
        &self,
        body: CreateChatCompletionRequest,
        stream: Option<&TextSink>,
        emitted: &AtomicBool,
    ) -> Result<ChatResponse, Failure> {
        let started = Instant::now();
        match stream {
            None => {
                let response = self.client.chat().create(body).await.map_err(classify)?;
                let choice = response
                    .choices
                    .into_iter()
                    .next()
                    .ok_or_else(|| LlmError::Rejected("an answer without choices".into()))?;
                let tool_calls = choice
                    .message
                    .tool_calls
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|c| match c {
                        ChatCompletionMessageToolCalls::Function(f) => Some(ToolCall {
                            id: f.id,
                            name: f.function.name,
                            arguments: f.function.arguments,
                        }),
                        _ => None,
                    })
                    .collect();
                let (tokens_in, tokens_out) = response
                    .usage
                    .map_or((0, 0), |u| (u.prompt_tokens, u.completion_tokens));
                Ok(ChatResponse {
                    text: choice.message.content,
                    tool_calls,
                    tokens_in,
                    tokens_out,
                    model: response.model,
                    latency: started.elapsed(),
                })
            }
            Some(sink) => {
                let mut chunks = self
                    .client
                    .chat()
                    .create_stream(body)
                    .await
                    .map_err(classify)?;
                let mut text = String::new();
                // Tool calls arrive in pieces, keyed by index: id and name once, arguments in parts.
                let mut calls: Vec<ToolCall> = Vec::new();
                let (mut tokens_in, mut tokens_out, mut model) = (0, 0, String::new());
                while let Some(chunk) = chunks.next().await {
                    let chunk = chunk.map_err(classify)?;
                    if model.is_empty() {
                        model = chunk.model.clone();
                    }
                    if let Some(usage) = chunk.usage {
                        tokens_in = usage.prompt_tokens;
                        tokens_out = usage.completion_tokens;
                    }
                    for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
                        if let Some(delta) = choice.delta.content.filter(|d| !d.is_empty()) {
                            text.push_str(&delta);
                            emitted.store(true, Ordering::Relaxed);
                            let _ = sink.send(delta);
                        }
                        for part in choice.delta.tool_calls.unwrap_or_default() {
                            let index = part.index as usize;
                            if calls.len() <= index {
                                calls.resize_with(index + 1, || ToolCall {
                                    id: String::new(),
                                    name: String::new(),
                                    arguments: String::new(),
                                });
                            }
                            let call = &mut calls[index];
                            if let Some(id) = part.id {
                                call.id = id;
                            }
                            if let Some(f) = part.function {
                                if let Some(name) = f.name {
                                    call.name.push_str(&name);
                                }
                                if let Some(args) = f.arguments {
                                    call.arguments.push_str(&args);
                                }
                            }
                        }
                    }
                }
                calls.retain(|c| !c.name.is_empty());
                Ok(ChatResponse {
                    text: (!text.is_empty()).then_some(text),
                    tool_calls: calls,
                    tokens_in,
                    tokens_out,
                    model,
                    latency: started.elapsed(),
                })
            }
        }
    }

    fn build(
        &self,
        r: &ChatRequest,
        stream: bool,
    ) -> Result<CreateChatCompletionRequest, OpenAIError> {
        let mut messages: Vec<ChatCompletionRequestMessage> = vec![
            ChatCompletionRequestSystemMessageArgs::default()
                .content(r.system.clone())
                .build()?
                .into(),
        ];
        for m in &r.messages {
            messages.push(match m {
                ChatMessage::User(text) => ChatCompletionRequestUserMessageArgs::default()
                    .content(text.clone())
                    .build()?
                    .into(),
                ChatMessage::Assistant { text, tool_calls } => {
                    let mut b = ChatCompletionRequestAssistantMessageArgs::default();
                    if let Some(t) = text {
                        b.content(t.clone());
                    }
                    if !tool_calls.is_empty() {
                        b.tool_calls(
                            tool_calls
                                .iter()
                                .map(|c| {
                                    ChatCompletionMessageToolCalls::Function(
                                        ChatCompletionMessageToolCall {
                                            id: c.id.clone(),
                                            function: FunctionCall {
                                                name: c.name.clone(),
                                                arguments: c.arguments.clone(),
                                            },
                                        },
                                    )
                                })
                                .collect::<Vec<_>>(),
                        );
                    }
                    b.build()?.into()
                }
                ChatMessage::Tool { call_id, content } => {
                    ChatCompletionRequestToolMessageArgs::default()
                        .tool_call_id(call_id.clone())
                        .content(content.clone())
                        .build()?
                        .into()
                }
            });
        }
        let mut b = CreateChatCompletionRequestArgs::default();
        b.model(r.model.clone().unwrap_or_else(|| self.model.clone()))
            .messages(messages)
            .temperature(r.temperature)
            .max_completion_tokens(r.max_output_tokens);
        if stream {
            b.stream_options(ChatCompletionStreamOptions {
                include_usage: Some(true),
                ..ChatCompletionStreamOptions::default()
            });
        }
        if !r.tools.is_empty() {
            let tools = r
                .tools
                .iter()
                .map(|t| {
                    Ok(ChatCompletionTools::Function(ChatCompletionTool {
                        function: FunctionObjectArgs::default()
                            .name(t.name.clone())
                            .description(t.description.clone())
                            .parameters(t.parameters.clone())
                            .build()?,
                    }))
                })
                .collect::<Result<Vec<_>, OpenAIError>>()?;
            let mode = match r.tool_choice {
                ToolChoice::Auto => ToolChoiceOptions::Auto,
                ToolChoice::Required => ToolChoiceOptions::Required,
                ToolChoice::None => ToolChoiceOptions::None,
            };
            b.tools(tools)
                .tool_choice(ChatCompletionToolChoiceOption::Mode(mode))
                .parallel_tool_calls(true);
        }
        b.build()
    }
}

impl ChatModel for OpenAiProvider {
    fn describe(&self) -> String {
        format!(
            "OpenAI-compatible endpoint {} (model {})",
            self.endpoint, self.model
        )
    }

    fn default_model(&self) -> &str {
        &self.model
    }

    fn selects_models(&self) -> bool {
        true
    }

    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
        stream: Option<TextSink>,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
        Box::pin(async move {
            let body = self
                .build(request, stream.is_some())
                .map_err(|e| LlmError::Rejected(format!("building the request: {e}")))?;
            let emitted = AtomicBool::new(false);
            self.with_retries(|| {
                let body = body.clone();
                let (stream, emitted) = (stream.as_ref(), &emitted);
                async move {
                    let result =
                        tokio::time::timeout(self.timeout, self.once(body, stream, emitted))
                            .await
                            .unwrap_or_else(|_| Err(LlmError::Timeout(self.timeout).into()));
                    // Once text has reached the caller, a retry would repeat it: fail instead.
                    result.map_err(|f| (f, !emitted.load(Ordering::Relaxed)))
                }
            })
            .await
        })
    }

    fn embed<'a>(
        &'a self,
        model: &'a str,
        inputs: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, LlmError>> {
        Box::pin(async move {
            let request = CreateEmbeddingRequestArgs::default()
                .model(model)
                .input(EmbeddingInput::StringArray(inputs.to_vec()))
                .build()
                .map_err(|e| LlmError::Rejected(format!("building the request: {e}")))?;
            let response = self
                .with_retries(|| {
                    let request = request.clone();
                    async move {
                        match tokio::time::timeout(
                            self.timeout,
                            self.client.embeddings().create(request),
                        )
                        .await
                        {
                            Ok(result) => result.map_err(|e| (classify(e), true)),
                            Err(_) => Err((LlmError::Timeout(self.timeout).into(), true)),
                        }
                    }
                })
                .await?;
            let mut data = response.data;
            data.sort_by_key(|e| e.index);
            if data.len() != inputs.len() {
                return Err(LlmError::Rejected(format!(
                    "{} embeddings for {} inputs",
                    data.len(),
                    inputs.len()
                )));
            }
            Ok(data.into_iter().map(|e| e.embedding).collect())
        })
    }

    fn counter(&self, model: &str) -> Arc<dyn TokenCounter> {
        TiktokenCounter::for_model(model)
    }

    fn context_window(&self, model: &str) -> u32 {
        self.context_window
            .unwrap_or_else(|| super::tokens::known_context_window(model))
    }
}

/// An HTTP error status from the endpoint, with what it said.
#[derive(Debug, thiserror::Error)]
#[error("HTTP {status}: {message}")]
struct StatusError {
    status: u16,
    retry_after: Option<Duration>,
    message: String,
}

/// Sends requests with reqwest and turns 429 and 5xx answers into [`StatusError`]s, keeping
/// `Retry-After`, which async-openai's own error type drops. Other answers pass through.
#[derive(Clone)]
struct StatusService {
    http: reqwest::Client,
}

impl tower_service::Service<HttpRequestFactory> for StatusService {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = BoxFuture<'static, Result<reqwest::Response, OpenAIError>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, factory: HttpRequestFactory) -> Self::Future {
        let http = self.http.clone();
        Box::pin(async move {
            let request = factory.build().await?;
            let response = http.execute(request).await?;
            let status = response.status().as_u16();
            if status != 429 && status < 500 {
                return Ok(response);
            }
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let body = response.text().await.unwrap_or_default();
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| body.chars().take(200).collect());
            Err(OpenAIError::Boxed(Box::new(StatusError {
                status,
                retry_after,
                message,
            })))
        })
    }
}

fn classify(e: OpenAIError) -> Failure {
    match e {
        OpenAIError::Boxed(boxed) => match boxed.downcast::<StatusError>() {
            Ok(status) => Failure {
                error: LlmError::Unavailable(status.to_string()),
                retry_after: status.retry_after,
                rate_limited: status.status == 429,
            },
            Err(other) => LlmError::Unavailable(other.to_string()).into(),
        },
        OpenAIError::Reqwest(e) => LlmError::Unavailable(e.to_string()).into(),
        OpenAIError::StreamError(e) => LlmError::Unavailable(format!("stream: {e}")).into(),
        OpenAIError::ApiError(api) => {
            let status = api.status_code.as_u16();
            let message = format!("HTTP {status}: {}", api.api_error.message);
            if status == 429 || status >= 500 {
                LlmError::Unavailable(message).into()
            } else {
                LlmError::Rejected(message).into()
            }
        }
        other => LlmError::Rejected(other.to_string()).into(),
    }
}
