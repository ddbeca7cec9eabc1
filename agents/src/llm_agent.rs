//! The LLM-backed agent: renders its prompt file, shows the model the conversation, offers the
//! tools its prompt lists (and that exist), runs the tool calls it makes (bounded), and returns the
//! reply and typed actions as a turn outcome. It has no side effects of its own: the runtime
//! commits the outcome.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use runtime::llm::{ChatMessage, ChatRequest, LlmClient, LlmError, ToolSpec};
use runtime::turn::{
    Speaker, TurnAction, TurnAudit, TurnEngine, TurnError, TurnInput, TurnOutcome,
};
use serde_json::{Value, json};

use crate::prompt::{Prompt, PromptSet};

/// Tool-call rounds per turn before the agent must answer.
pub const MAX_TOOL_ROUNDS: usize = 4;

/// Tools implemented so far; a prompt may list more, but only these are offered to the model.
const IMPLEMENTED_TOOLS: &[&str] = &["escalate", "handoff"];

/// An agent kind driven by its prompt file and an LLM.
#[derive(Clone)]
pub struct LlmAgent {
    kind: String,
    prompts: Arc<PromptSet>,
    llm: Option<LlmClient>,
}

impl std::fmt::Debug for LlmAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmAgent")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl LlmAgent {
    pub fn new(kind: &str, prompts: Arc<PromptSet>, llm: Option<LlmClient>) -> Self {
        Self {
            kind: kind.to_owned(),
            prompts,
            llm,
        }
    }
}

impl TurnEngine for LlmAgent {
    fn run(
        &self,
        input: TurnInput,
    ) -> Pin<Box<dyn Future<Output = Result<TurnOutcome, TurnError>> + Send>> {
        let this = self.clone();
        Box::pin(async move { this.turn(input).await })
    }
}

impl LlmAgent {
    async fn turn(&self, input: TurnInput) -> Result<TurnOutcome, TurnError> {
        let started = Instant::now();
        let prompt = self
            .prompts
            .get(&input.tenant.slug, &input.agent)
            .ok_or_else(|| {
                TurnError::Permanent(format!("no prompt file for agent {:?}", input.agent))
            })?;
        let llm = self
            .llm
            .as_ref()
            .ok_or_else(|| TurnError::NotReady(LlmError::NotConfigured.to_string()))?;
        let system = prompt
            .render(&json!({"tenant": input.tenant, "contact": input.contact, "history": input.history, "agent": input.agent}))
            .map_err(|e| TurnError::Permanent(e.to_string()))?;

        let mut actions = Vec::new();
        // Escalation keywords from the prompt file, matched Arabic-aware.
        let said: Vec<&str> = input.new_messages.iter().map(|m| m.text.as_str()).collect();
        if let Some(keyword) = prompt.front.escalation.keywords.iter().find(|k| {
            said.iter()
                .any(|text| knowledge_base::normalize::contains(text, k))
        }) {
            actions.push(TurnAction::Escalate {
                reason: format!("the contact wrote the escalation keyword {keyword:?}"),
            });
        }

        let mut messages: Vec<ChatMessage> = input
            .history
            .iter()
            .map(|h| match h.role {
                Speaker::Contact => ChatMessage::User(h.text.clone()),
                Speaker::Agent => ChatMessage::Assistant {
                    text: Some(h.text.clone()),
                    tool_calls: Vec::new(),
                },
            })
            .collect();
        messages.extend(
            input
                .new_messages
                .iter()
                .map(|m| ChatMessage::User(m.text.clone())),
        );
        let tools = self.tools(&prompt);

        let mut audit = TurnAudit {
            agent: input.agent.clone(),
            prompt_version: prompt.version.clone(),
            model: llm.model().to_owned(),
            ..TurnAudit::default()
        };
        let mut calls_log = Vec::new();
        let mut reply = None;
        for round in 0..=MAX_TOOL_ROUNDS {
            let request = ChatRequest {
                system: system.clone(),
                messages: messages.clone(),
                // The last round offers no tools: the model has to answer.
                tools: if round < MAX_TOOL_ROUNDS {
                    tools.clone()
                } else {
                    Vec::new()
                },
                temperature: prompt.front.temperature,
                max_output_tokens: prompt.front.max_output_tokens,
            };
            let response = llm.chat(&request).await.map_err(|e| match e {
                LlmError::Rejected(m) => TurnError::Permanent(m),
                other => TurnError::Temporary(other.to_string()),
            })?;
            audit.tokens_in += response.tokens_in;
            audit.tokens_out += response.tokens_out;
            audit.model = response.model.clone();
            if response.tool_calls.is_empty() {
                reply = response.text.filter(|t| !t.trim().is_empty());
                break;
            }
            messages.push(ChatMessage::Assistant {
                text: response.text.clone(),
                tool_calls: response.tool_calls.clone(),
            });
            for call in &response.tool_calls {
                let result = self.call_tool(&prompt, &call.name, &call.arguments, &mut actions);
                calls_log.push(
                    json!({"name": call.name, "arguments": call.arguments, "result": result}),
                );
                messages.push(ChatMessage::Tool {
                    call_id: call.id.clone(),
                    content: result.to_string(),
                });
            }
        }
        audit.tool_calls = Value::Array(calls_log);
        audit.latency_ms =
            u32::try_from(started.elapsed().min(Duration::from_secs(3600)).as_millis())
                .unwrap_or(u32::MAX);
        Ok(TurnOutcome {
            replies: reply.into_iter().collect(),
            actions,
            audit,
        })
    }

    fn tools(&self, prompt: &Prompt) -> Vec<ToolSpec> {
        let agents: Vec<&str> = self.prompts.agents().collect();
        prompt
            .front
            .tools
            .iter()
            .filter(|t| IMPLEMENTED_TOOLS.contains(&t.as_str()))
            .map(|name| match name.as_str() {
                "escalate" => ToolSpec {
                    name: "escalate".into(),
                    description: "Hand the conversation to a human sales rep (legal matters, price exceptions, an explicit request for a person). Tell the contact a colleague will follow up.".into(),
                    parameters: json!({"type": "object", "properties": {"reason": {"type": "string", "description": "Why a human is needed"}}, "required": ["reason"], "additionalProperties": false}),
                },
                _ => ToolSpec {
                    name: "handoff".into(),
                    description: "Pass the conversation to another specialised agent for the next turns.".into(),
                    parameters: json!({"type": "object", "properties": {
                        "to_agent": {"type": "string", "enum": agents},
                        "reason": {"type": "string"}}, "required": ["to_agent", "reason"], "additionalProperties": false}),
                },
            })
            .collect()
    }

    /// Runs one tool call. Arguments are validated here, in code; the tenant and contact are never
    /// taken from them. A tool the prompt does not list is refused.
    fn call_tool(
        &self,
        prompt: &Prompt,
        name: &str,
        arguments: &str,
        actions: &mut Vec<TurnAction>,
    ) -> Value {
        if !prompt.front.tools.iter().any(|t| t == name) || !IMPLEMENTED_TOOLS.contains(&name) {
            return json!({"error": format!("the tool {name:?} is not available to this agent")});
        }
        let Ok(args) = serde_json::from_str::<Value>(arguments) else {
            return json!({"error": "the arguments are not valid JSON"});
        };
        let text = |key: &str| {
            args.get(key)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        match name {
            "escalate" => {
                let reason = text("reason").unwrap_or_else(|| "the agent asked for a human".into());
                actions.push(TurnAction::Escalate { reason });
                json!({"ok": true, "note": "A human rep will take over; no agent will write to the contact until then."})
            }
            "handoff" => {
                let Some(to) = text("to_agent") else {
                    return json!({"error": "to_agent is required"});
                };
                if self.prompts.agents().all(|a| a != to) {
                    return json!({"error": format!("there is no agent {to:?}")});
                }
                actions.push(TurnAction::Handoff {
                    to_agent: to.clone(),
                    reason: text("reason").unwrap_or_default(),
                });
                json!({"ok": true, "next_agent": to})
            }
            _ => json!({"error": "unknown tool"}),
        }
    }
}
