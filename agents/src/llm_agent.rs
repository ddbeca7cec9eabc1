//! The LLM-backed agent: renders its prompt file, shows the model the conversation, offers the
//! tools its prompt lists (and that exist), runs the tool calls it makes (bounded), and returns the
//! reply and typed actions as a turn outcome. It has no side effects of its own: the runtime
//! commits the outcome.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use runtime::llm::tokens::{self, REPLY_PRIMING, TokenCounter};
use runtime::llm::{ChatMessage, ChatRequest, Llm, LlmError, ToolChoice, ToolSpec};
use runtime::turn::{
    Language, Speaker, SummaryUpdate, TurnAction, TurnAudit, TurnEngine, TurnError, TurnInput,
    TurnOutcome, contact_language,
};
use serde_json::{Value, json};

use knowledge_base::KnowledgeBase;

use crate::prompt::{Prompt, PromptSet};

/// Tool-call rounds per turn before the agent must answer.
pub const MAX_TOOL_ROUNDS: usize = 4;
/// Output budget of a rolling-summary call, and the longest summary kept.
pub const SUMMARY_MAX_TOKENS: u32 = 200;
const SUMMARY_MAX_CHARS: usize = 4000;

/// Tools implemented so far; a prompt may list more, but only these are offered to the model.
const IMPLEMENTED_TOOLS: &[&str] = &["escalate", "handoff", "search_knowledge"];

/// Passages `search_knowledge` returns by default, and at most.
const KNOWLEDGE_RESULTS: usize = 4;
const KNOWLEDGE_MAX_RESULTS: usize = 8;

/// An agent kind driven by its prompt file and an LLM.
#[derive(Clone)]
pub struct LlmAgent {
    kind: String,
    prompts: Arc<PromptSet>,
    /// The model, or why there is none (the turn waits, `NotReady`).
    llm: Result<Llm, String>,
    /// The knowledge base `search_knowledge` searches; without it the tool is not offered.
    knowledge: Option<Arc<KnowledgeBase>>,
}

impl std::fmt::Debug for LlmAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmAgent")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl LlmAgent {
    pub fn new(kind: &str, prompts: Arc<PromptSet>, llm: Result<Llm, String>) -> Self {
        Self {
            kind: kind.to_owned(),
            prompts,
            llm,
            knowledge: None,
        }
    }

    /// Lets the agent's `search_knowledge` search this knowledge base.
    pub fn with_knowledge(mut self, knowledge: Arc<KnowledgeBase>) -> Self {
        self.knowledge = Some(knowledge);
        self
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

fn turn_error(e: LlmError) -> TurnError {
    match e {
        LlmError::Rejected(m) => TurnError::Permanent(m),
        LlmError::NotConfigured(m) => TurnError::NotReady(m),
        other => TurnError::Temporary(other.to_string()),
    }
}

/// A cap the tenant has reached, for the notification and the audit.
fn budget_reached(input: &TurnInput) -> Option<(&'static str, String)> {
    let l = &input.llm;
    let s = &l.settings;
    let dollars = |micros: i64| micros as f64 / 1e6;
    if let Some(cap) = s.daily_tokens.filter(|cap| l.today_tokens >= *cap) {
        return Some(("day", format!("the daily cap of {cap} tokens")));
    }
    if let Some(cap) = s.monthly_tokens.filter(|cap| l.month_tokens >= *cap) {
        return Some(("month", format!("the monthly cap of {cap} tokens")));
    }
    if let Some(cap) = s
        .daily_cost_usd
        .filter(|cap| dollars(l.today_cost_micros) >= *cap)
    {
        return Some(("day", format!("the daily cap of ${cap:.2}")));
    }
    if let Some(cap) = s
        .monthly_cost_usd
        .filter(|cap| dollars(l.month_cost_micros) >= *cap)
    {
        return Some(("month", format!("the monthly cap of ${cap:.2}")));
    }
    None
}

/// Tokens the summary takes in the system prompt (with its heading).
fn summary_tokens(counter: &dyn TokenCounter, summary: Option<&str>) -> u32 {
    summary.map_or(0, |s| counter.count(s) + SUMMARY_HEADING_TOKENS)
}

/// Tokens of the heading the summary is introduced with in the system prompt (and its margin).
const SUMMARY_HEADING_TOKENS: u32 = 8;

/// History (messages since the summary) beyond which the oldest are summarised anyway, so a turn
/// never has more than `runtime::turn::HISTORY_LIMIT` to load.
const SUMMARISE_BEYOND: usize = (runtime::turn::HISTORY_LIMIT as usize) * 3 / 4;

/// Room kept for a new rolling summary: the summary call's output budget and its heading.
const SUMMARY_RESERVE: u32 = SUMMARY_MAX_TOKENS + SUMMARY_HEADING_TOKENS;

/// `text` cut (keeping its newest part) until it is at most `max` tokens.
fn shorten_to(counter: &dyn TokenCounter, text: &str, max: u32) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    while !chars.is_empty() && counter.count(&chars.iter().collect::<String>()) > max {
        let cut = chars.len() / 4 + 1;
        chars.drain(..cut.min(chars.len()));
    }
    chars.into_iter().collect()
}

/// What the contact hears when the tenant's model budget is spent.
pub fn budget_message(language: Language) -> &'static str {
    match language {
        Language::Arabic => "شكرًا لتواصلك معنا! سيتابع معك أحد زملائنا شخصيًا في أقرب وقت.",
        Language::English => {
            "Thank you for your message! A colleague will personally follow up with you shortly."
        }
    }
}

/// Tokens of a stored message: its stored count when the encoding matches, else counted now
/// (and recorded in `counted`, so the count is stored and never made again).
fn tokens_of(
    counter: &dyn TokenCounter,
    id: runtime::MessageId,
    text: &str,
    stored: Option<&(u32, String)>,
    counted: &mut Vec<(runtime::MessageId, u32)>,
) -> u32 {
    let count = match stored {
        Some((n, encoding)) if encoding == counter.encoding() => *n,
        _ => {
            let n = counter.count(text);
            counted.push((id, n));
            n
        }
    };
    count + tokens::MESSAGE_OVERHEAD
}

/// A turn's context, measured in the model's tokens.
pub struct Budget {
    pub system: String,
    pub tools: Vec<ToolSpec>,
    pub window: u32,
    pub output: u32,
    /// System prompt, tools, reply priming and the new messages.
    pub fixed_without_summary: u32,
    /// Each history item's tokens (overhead included), oldest first.
    pub history_tokens: Vec<u32>,
    /// Messages counted now (their counts are stored by the turn).
    pub counted: Vec<(runtime::MessageId, u32)>,
    pub counter: Arc<dyn TokenCounter>,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("window", &self.window)
            .field("output", &self.output)
            .field("fixed_without_summary", &self.fixed_without_summary)
            .field("history", &self.history_tokens.len())
            .finish_non_exhaustive()
    }
}

impl Budget {
    /// The history that fits with `summary` in the system prompt.
    pub fn fit(&self, summary: Option<&str>) -> tokens::Fit {
        self.fit_reserving(summary_tokens(self.counter.as_ref(), summary))
    }

    /// The history that fits with `reserved` tokens kept for the summary.
    pub fn fit_reserving(&self, reserved: u32) -> tokens::Fit {
        tokens::fit(
            self.window,
            self.output,
            self.fixed_without_summary + reserved,
            &self.history_tokens,
        )
    }

    /// The system prompt (with the summary) and the messages of the request.
    pub fn request(
        &self,
        input: &TurnInput,
        fit: tokens::Fit,
        summary: Option<&str>,
    ) -> (String, Vec<ChatMessage>) {
        let mut system = self.system.clone();
        if let Some(s) = summary {
            system.push_str("\n\nSummary of the earlier conversation:\n");
            system.push_str(s);
        }
        let mut messages: Vec<ChatMessage> = input.history
            [fit.keep_from.min(input.history.len())..]
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
        (system, messages)
    }
}

impl LlmAgent {
    async fn turn(&self, input: TurnInput) -> Result<TurnOutcome, TurnError> {
        let started = Instant::now();
        let prompt = self.prompt_for(&input)?;
        let llm = self
            .llm
            .as_ref()
            .map_err(|e| TurnError::NotReady(e.clone()))?;
        let model = llm.model_for(
            &input.llm.settings,
            &input.agent,
            prompt.front.model.as_deref(),
        );
        let mut audit = TurnAudit {
            agent: input.agent.clone(),
            prompt_version: prompt.version.clone(),
            model: model.clone(),
            ..TurnAudit::default()
        };

        // At the tenant's cap: no model call; a human takes over and the admins hear of it once.
        if let Some((period, cap)) = budget_reached(&input) {
            tracing::warn!(tenant = %input.tenant.slug, cap, "LLM budget reached: handing the conversation to a human");
            audit.tool_calls = json!([{"fallback": "llm_budget_reached", "cap": cap}]);
            let today = runtime::turn::utc_today();
            let key = if period == "day" {
                format!("llm_budget:{today}")
            } else {
                format!("llm_budget:{}", &today[..7])
            };
            return Ok(TurnOutcome {
                replies: vec![budget_message(contact_language(&input)).to_owned()],
                actions: vec![
                    TurnAction::Escalate {
                        reason: format!("the tenant reached {cap} for the language model"),
                    },
                    TurnAction::NotifyAdmins {
                        key,
                        kind: "llm_budget_reached".into(),
                        title: "LLM budget reached".into(),
                        body: format!(
                            "Agents stopped calling the model: the tenant reached {cap}. Conversations are handed to reps until the cap is raised or the period ends."
                        ),
                    },
                ],
                audit,
                ..TurnOutcome::default()
            });
        }

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

        let budget = self.measure(&prompt, llm, &model, &input)?;
        // Without any summary, the fixed parts must fit; otherwise no amount of trimming helps
        // (checked before a summary is paid for).
        let bare = budget.fit(None);
        if bare.overflow {
            return Err(TurnError::Permanent(format!(
                "the prompt, tools and new messages ({} tokens) do not fit the {}-token window of {model} with {} tokens of output",
                bare.prompt_tokens, budget.window, budget.output
            )));
        }
        let mut summary = input.summary.clone();
        let mut fit = budget.fit(summary.as_deref());
        let mut summary_update = None;
        // A turn loads at most HISTORY_LIMIT messages since the summary: a long conversation is
        // summarised before it gets there, even when a big window holds it all.
        let long = input.history.len() > SUMMARISE_BEYOND;
        if fit.keep_from > 0 || long {
            // Room for the new summary first, so everything it leaves out of the request is in it.
            fit = budget.fit_reserving(SUMMARY_RESERVE);
            if long {
                fit.keep_from = fit
                    .keep_from
                    .max(input.history.len() - SUMMARISE_BEYOND / 2);
            }
            let dropped = &input.history[..fit.keep_from];
            let text = self
                .summarise(llm, &model, summary.as_deref(), dropped, &mut audit)
                .await;
            let text = shorten_to(budget.counter.as_ref(), &text, SUMMARY_MAX_TOKENS);
            summary = Some(text.clone());
            summary_update = Some(SummaryUpdate {
                text,
                through_seq: dropped.last().map_or(0, |h| h.seq),
            });
        }
        let (system, mut messages) = budget.request(&input, fit, summary.as_deref());
        let Budget {
            tools,
            counter,
            counted,
            output,
            ..
        } = budget;

        let mut calls_log = Vec::new();
        let mut reply = None;
        for round in 0..=MAX_TOOL_ROUNDS {
            let request = ChatRequest {
                model: Some(model.clone()),
                system: system.clone(),
                messages: messages.clone(),
                // The last round offers no tools: the model has to answer.
                tools: if round < MAX_TOOL_ROUNDS {
                    tools.clone()
                } else {
                    Vec::new()
                },
                tool_choice: ToolChoice::Auto,
                temperature: prompt.front.temperature,
                max_output_tokens: output,
            };
            let response = llm.chat(&request).await.map_err(turn_error)?;
            self.count_call(llm, &model, &mut audit, &response);
            if response.tool_calls.is_empty() {
                reply = response.text.filter(|t| !t.trim().is_empty());
                break;
            }
            messages.push(ChatMessage::Assistant {
                text: response.text.clone(),
                tool_calls: response.tool_calls.clone(),
            });
            for call in &response.tool_calls {
                let result = self
                    .call_tool(&input, &prompt, &call.name, &call.arguments, &mut actions)
                    .await;
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
            token_counts: counted,
            token_encoding: counter.encoding().to_owned(),
            summary: summary_update,
        })
    }

    /// The prompt file of the turn's agent (the tenant's overlay, else the global file).
    fn prompt_for(&self, input: &TurnInput) -> Result<Arc<Prompt>, TurnError> {
        self.prompts
            .get(&input.tenant.slug, &input.agent)
            .ok_or_else(|| {
                TurnError::Permanent(format!("no prompt file for agent {:?}", input.agent))
            })
    }

    /// Measures a turn's context, without I/O: the rendered system prompt, the tools, and the
    /// tokens of everything fixed and of each history item (stored counts reused; the rest
    /// counted once and returned in [`Budget::counted`] to be stored).
    pub fn measure(
        &self,
        prompt: &Prompt,
        llm: &Llm,
        model: &str,
        input: &TurnInput,
    ) -> Result<Budget, TurnError> {
        let system = prompt
            .render(&json!({"tenant": input.tenant, "contact": input.contact, "history": input.history, "agent": input.agent}))
            .map_err(|e| TurnError::Permanent(e.to_string()))?;
        let tools = self.tools(prompt);
        let counter = llm.counter(model);
        let mut counted = Vec::new();
        let mut fixed = counter.count(&system)
            + tokens::MESSAGE_OVERHEAD
            + tokens::tools_tokens(counter.as_ref(), &tools)
            + REPLY_PRIMING;
        for m in &input.new_messages {
            fixed += tokens_of(
                counter.as_ref(),
                m.id,
                &m.text,
                m.tokens.as_ref(),
                &mut counted,
            );
        }
        let history_tokens = input
            .history
            .iter()
            .map(|h| {
                tokens_of(
                    counter.as_ref(),
                    h.id,
                    &h.text,
                    h.tokens.as_ref(),
                    &mut counted,
                )
            })
            .collect();
        Ok(Budget {
            system,
            tools,
            window: llm.context_window(model),
            output: prompt.front.max_output_tokens,
            fixed_without_summary: fixed,
            history_tokens,
            counted,
            counter,
        })
    }

    /// The whole context of a turn whose history needs no new summary: what a turn sends to the
    /// model, for benchmarks and tools that show a prompt engineer the assembled request.
    pub fn context(
        &self,
        llm: &Llm,
        input: &TurnInput,
    ) -> Result<(String, Vec<ChatMessage>, Vec<ToolSpec>), TurnError> {
        let prompt = self.prompt_for(input)?;
        let model = llm.model_for(
            &input.llm.settings,
            &input.agent,
            prompt.front.model.as_deref(),
        );
        let budget = self.measure(&prompt, llm, &model, input)?;
        let fit = budget.fit(input.summary.as_deref());
        let (system, messages) = budget.request(input, fit, input.summary.as_deref());
        Ok((system, messages, budget.tools))
    }

    /// Adds a call to the audit. It is priced by the model asked for (endpoints report dated
    /// snapshots such as `gpt-4o-mini-2024-07-18`), else by the model that answered.
    fn count_call(
        &self,
        llm: &Llm,
        requested: &str,
        audit: &mut TurnAudit,
        response: &runtime::llm::ChatResponse,
    ) {
        audit.calls += 1;
        audit.tokens_in += response.tokens_in;
        audit.tokens_out += response.tokens_out;
        if !response.model.is_empty() {
            audit.model = response.model.clone();
        }
        let mut price = llm.price(requested);
        if price == runtime::llm::Price::default() {
            price = llm.price(&response.model);
        }
        audit.cost_micros += price.cost_micros(response.tokens_in, response.tokens_out);
    }

    /// Folds `dropped` (history leaving the window) into the rolling summary with one model call;
    /// if the call fails, the summary keeps the dropped messages' opening words instead, so the
    /// turn goes on.
    async fn summarise(
        &self,
        llm: &Llm,
        model: &str,
        previous: Option<&str>,
        dropped: &[runtime::turn::HistoryItem],
        audit: &mut TurnAudit,
    ) -> String {
        let transcript: String = dropped
            .iter()
            .map(|h| {
                let who = match h.role {
                    Speaker::Contact => "Contact",
                    Speaker::Agent => "Agent",
                };
                format!("{who}: {}\n", h.text)
            })
            .collect();
        let request = ChatRequest {
            model: Some(model.to_owned()),
            system: "You keep the running summary of a sales conversation. Write a short summary (at most 120 words), in the conversation's language, of the previous summary and the new messages: who the contact is, what they want, prices and dates mentioned, promises made. No preamble.".into(),
            messages: vec![ChatMessage::User(format!(
                "Previous summary:\n{}\n\nNew messages:\n{transcript}",
                previous.unwrap_or("(none)")
            ))],
            tools: Vec::new(),
            tool_choice: ToolChoice::None,
            temperature: 0.0,
            max_output_tokens: SUMMARY_MAX_TOKENS,
        };
        let summary = match llm.chat(&request).await {
            Ok(response) => {
                self.count_call(llm, model, audit, &response);
                response.text.filter(|t| !t.trim().is_empty())
            }
            Err(e) => {
                tracing::warn!(error = %e, "summarising trimmed history failed; keeping an extract instead");
                None
            }
        };
        let text = summary.unwrap_or_else(|| {
            let mut extract = previous.map(|p| format!("{p}\n")).unwrap_or_default();
            for line in transcript.lines() {
                extract.extend(line.chars().take(120));
                extract.push('\n');
            }
            extract
        });
        // Keep the newest part when it grows too long.
        let chars: Vec<char> = text.trim().chars().collect();
        chars[chars.len().saturating_sub(SUMMARY_MAX_CHARS)..]
            .iter()
            .collect()
    }

    /// Whether this agent can run `tool` (implemented, and its dependencies present).
    fn offers(&self, tool: &str) -> bool {
        IMPLEMENTED_TOOLS.contains(&tool)
            && (tool != "search_knowledge" || self.knowledge.is_some())
    }

    fn tools(&self, prompt: &Prompt) -> Vec<ToolSpec> {
        let agents: Vec<&str> = self.prompts.agents().collect();
        prompt
            .front
            .tools
            .iter()
            .filter(|t| self.offers(t))
            .map(|name| match name.as_str() {
                "search_knowledge" => ToolSpec {
                    name: "search_knowledge".into(),
                    description: "Search the business's knowledge base (products, pricing policy, guarantee, delivery, affiliates, FAQ) for facts to answer with. Ask in the contact's language. Each result has a citation (article › section): cite it when you use it, and never state a fact the results do not give.".into(),
                    parameters: json!({"type": "object", "properties": {
                        "query": {"type": "string", "description": "What to look up, e.g. «ضمان السبائك» or \"buyback price\""},
                        "limit": {"type": "integer", "minimum": 1, "maximum": KNOWLEDGE_MAX_RESULTS}},
                        "required": ["query"], "additionalProperties": false}),
                },
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
    async fn call_tool(
        &self,
        input: &TurnInput,
        prompt: &Prompt,
        name: &str,
        arguments: &str,
        actions: &mut Vec<TurnAction>,
    ) -> Value {
        if !prompt.front.tools.iter().any(|t| t == name) || !self.offers(name) {
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
            "search_knowledge" => {
                let Some(query) = text("query") else {
                    return json!({"error": "query is required: what to look up"});
                };
                let limit = match args.get("limit") {
                    None | Some(Value::Null) => KNOWLEDGE_RESULTS,
                    Some(v) => match v.as_u64() {
                        Some(n @ 1..=8) => n as usize,
                        _ => {
                            return json!({"error": format!("limit is a whole number from 1 to {KNOWLEDGE_MAX_RESULTS}")});
                        }
                    },
                };
                let Some(kb) = &self.knowledge else {
                    return json!({"error": "the knowledge base is not available"});
                };
                // The tenant is the conversation's, never the model's.
                match kb.search(input.tenant.id, &query, limit).await {
                    Ok(hits) if hits.is_empty() => {
                        json!({"query_language": knowledge_base::normalize::detect(&query).code(), "results": [], "note": "Nothing in the knowledge base matches: say you will check, do not guess."})
                    }
                    Ok(hits) => {
                        json!({"query_language": knowledge_base::normalize::detect(&query).code(), "results": hits.iter().map(|h| json!({
                        "citation": h.citation(),
                        "text": h.text,
                        "score": (h.score * 1000.0).round() / 1000.0,
                    })).collect::<Vec<_>>()})
                    }
                    Err(e) => {
                        tracing::warn!(tenant = %input.tenant.id, "search_knowledge failed: {e}");
                        json!({"error": "the knowledge base could not be searched just now"})
                    }
                }
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
