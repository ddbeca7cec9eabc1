//! The LLM client: any OpenAI-compatible chat-completions endpoint (`LLM_BASE_URL`), through
//! async-openai, with a timeout on every call and no hidden retries (the turn decides).

use std::time::{Duration, Instant};

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{
    ChatCompletionMessageToolCall, ChatCompletionMessageToolCalls,
    ChatCompletionRequestAssistantMessageArgs, ChatCompletionRequestMessage,
    ChatCompletionRequestSystemMessageArgs, ChatCompletionRequestToolMessageArgs,
    ChatCompletionRequestUserMessageArgs, ChatCompletionTool, ChatCompletionToolChoiceOption,
    ChatCompletionTools, CreateChatCompletionRequestArgs, FunctionCall, FunctionObjectArgs,
    ToolChoiceOptions,
};
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::settings::Settings;

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

#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub system: String,
    pub messages: Vec<ChatMessage>,
    pub tools: Vec<ToolSpec>,
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
    /// Transport errors, 429 and 5xx: worth retrying later.
    #[error("the model is unavailable: {0}")]
    Unavailable(String),
    /// The request was refused (4xx) or the answer unusable: retrying the same request won't help.
    #[error("the model rejected the request: {0}")]
    Rejected(String),
    #[error("no LLM is configured: set LLM_BASE_URL (and LLM_API_KEY, LLM_MODEL)")]
    NotConfigured,
}

/// A chat-completions client for one endpoint and model.
#[derive(Clone)]
pub struct LlmClient {
    client: Client<OpenAIConfig>,
    model: String,
    timeout: Duration,
}

impl std::fmt::Debug for LlmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmClient")
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The model name sent when `LLM_MODEL` is unset.
pub const DEFAULT_MODEL: &str = "gpt-4o-mini";

impl LlmClient {
    /// The client for `LLM_BASE_URL`; `None` when it is unset.
    pub fn from_settings(settings: &Settings) -> Option<Self> {
        let base = settings.llm_base_url.as_deref()?;
        let key = settings
            .llm_api_key
            .as_ref()
            .map(|k| k.expose_secret().to_owned())
            .unwrap_or_default();
        Some(Self::new(
            base,
            &key,
            settings.llm_model.as_deref().unwrap_or(DEFAULT_MODEL),
            Duration::from_secs(60),
        ))
    }

    pub fn new(base_url: &str, api_key: &str, model: &str, timeout: Duration) -> Self {
        let http = crate::http::client(timeout);
        let config = OpenAIConfig::new()
            .with_api_base(base_url.trim_end_matches('/'))
            .with_api_key(api_key);
        // Our own HTTP service: async-openai's default one retries 429/5xx by itself, with no cap
        // on Retry-After; the turn decides about retries instead.
        let client = Client::build(http.clone(), config)
            .with_http_service(async_openai::middleware::ReqwestService::new(http));
        Self {
            client,
            model: model.to_owned(),
            timeout,
        }
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    pub async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let body = self
            .build(request)
            .map_err(|e| LlmError::Rejected(format!("building the request: {e}")))?;
        let started = Instant::now();
        let response = tokio::time::timeout(self.timeout, self.client.chat().create(body))
            .await
            .map_err(|_| LlmError::Timeout(self.timeout))?
            .map_err(classify)?;
        let latency = started.elapsed();
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
            latency,
        })
    }

    fn build(
        &self,
        r: &ChatRequest,
    ) -> Result<
        async_openai::types::chat::CreateChatCompletionRequest,
        async_openai::error::OpenAIError,
    > {
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
        b.model(self.model.clone())
            .messages(messages)
            .temperature(r.temperature)
            .max_completion_tokens(r.max_output_tokens);
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
                .collect::<Result<Vec<_>, async_openai::error::OpenAIError>>()?;
            b.tools(tools)
                .tool_choice(ChatCompletionToolChoiceOption::Mode(
                    ToolChoiceOptions::Auto,
                ));
        }
        b.build()
    }
}

fn classify(e: async_openai::error::OpenAIError) -> LlmError {
    use async_openai::error::OpenAIError as E;
    match e {
        E::Reqwest(e) => LlmError::Unavailable(e.to_string()),
        E::ApiError(api) => {
            let status = api.status_code.as_u16();
            if status == 429 || status >= 500 {
                LlmError::Unavailable(format!("HTTP {status}: {}", api.api_error.message))
            } else {
                LlmError::Rejected(format!("HTTP {status}: {}", api.api_error.message))
            }
        }
        other => LlmError::Rejected(other.to_string()),
    }
}
