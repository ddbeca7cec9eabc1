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
use runtime::{AgentKind, Channel};
use serde_json::{Value, json};

use knowledge_base::KnowledgeBase;

use runtime::actions::{ActionError, Actions, ToolAction};

use crate::prompt::{Prompt, PromptStore};
use crate::tools::{self, Effect};

/// Tool-call rounds per turn before the agent must answer.
pub const MAX_TOOL_ROUNDS: usize = 4;
/// Output budget of a rolling-summary call, and the longest summary kept.
pub const SUMMARY_MAX_TOKENS: u32 = 200;
const SUMMARY_MAX_CHARS: usize = 4000;

/// Refused tool calls in one turn after which the conversation goes to a human (the rule
/// "repeated tool failure").
pub const MAX_TOOL_FAILURES: usize = 3;

/// Passages `search_knowledge` returns by default, and at most.
const KNOWLEDGE_RESULTS: usize = 4;
const KNOWLEDGE_MAX_RESULTS: usize = 8;

/// An agent kind driven by its prompt file and an LLM.
#[derive(Clone)]
pub struct LlmAgent {
    kind: AgentKind,
    prompts: Arc<PromptStore>,
    /// The model, or why there is none (the turn waits, `NotReady`).
    llm: Result<Llm, String>,
    /// The knowledge base `search_knowledge` searches; without it the tool is not offered.
    knowledge: Option<Arc<KnowledgeBase>>,
    /// Applies and rehearses CRM actions; without it no action or read tool is offered.
    actions: Option<Actions>,
    /// The agent kinds that run, for `handoff` and `escalate`.
    running: Arc<[AgentKind]>,
}

impl std::fmt::Debug for LlmAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmAgent")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl LlmAgent {
    pub fn new(kind: AgentKind, prompts: Arc<PromptStore>, llm: Result<Llm, String>) -> Self {
        let running = prompts
            .current()
            .agents()
            .filter_map(AgentKind::parse)
            .collect();
        Self {
            kind,
            prompts,
            llm,
            knowledge: None,
            actions: None,
            running,
        }
    }

    /// Lets the agent act on the CRM through `actions`.
    pub fn with_actions(mut self, actions: Actions) -> Self {
        self.actions = Some(actions);
        self
    }

    /// The agent kinds that run (by default, every kind with a prompt file).
    pub fn with_running(mut self, kinds: Arc<[AgentKind]>) -> Self {
        self.running = kinds;
        self
    }

    fn runs(&self, kind: AgentKind) -> bool {
        self.running.contains(&kind)
    }

    /// Where the conversation goes when this agent needs a human: the escalation agent, which
    /// assigns a rep and tells the contact, or straight to the reps when it does not run (or this
    /// is it).
    fn escalation(&self, reason: String) -> TurnAction {
        if self.kind != AgentKind::ESCALATION && self.runs(AgentKind::ESCALATION) {
            TurnAction::Handoff {
                to_agent: AgentKind::ESCALATION,
                reason,
            }
        } else {
            TurnAction::Escalate { reason }
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
            input.agent.as_str(),
            prompt.front.model.as_deref(),
        );
        let mut audit = TurnAudit {
            agent: input.agent,
            prompt_version: prompt.version.clone(),
            prompt_path: prompt.name.clone(),
            prompt_body: Some(prompt.source.to_string()),
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

        // The escalation rules of the prompt file: the conversation goes to a human before the
        // model is asked anything.
        if let Some(reason) = self.escalation_rule(&prompt, &input) {
            tracing::info!(conversation = ?input.conversation, agent = %self.kind, reason, "escalation rule");
            audit.tool_calls = json!([{"rule": "escalation", "reason": reason}]);
            return Ok(TurnOutcome {
                actions: vec![self.escalation(reason)],
                audit,
                ..TurnOutcome::default()
            });
        }
        let mut actions = Vec::new();

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
        let mut failures = 0;
        'rounds: for round in 0..=MAX_TOOL_ROUNDS {
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
                let refused = result.get("error").is_some();
                calls_log.push(
                    json!({"name": call.name, "arguments": call.arguments, "result": result}),
                );
                messages.push(ChatMessage::Tool {
                    call_id: call.id.clone(),
                    content: result.to_string(),
                });
                if refused {
                    failures += 1;
                    if failures >= MAX_TOOL_FAILURES {
                        let reason = format!(
                            "{failures} tool calls failed in one turn (the last: {} — {})",
                            call.name, result["error"]
                        );
                        tracing::warn!(conversation = ?input.conversation, agent = %self.kind, reason, "escalating");
                        actions.retain(|a| matches!(a, TurnAction::Tool(_)));
                        actions.push(self.escalation(reason));
                        reply = None;
                        break 'rounds;
                    }
                }
            }
            // After a handoff the next agent answers; this one says no more than it has.
            if actions
                .iter()
                .any(|a| matches!(a, TurnAction::Handoff { .. }))
            {
                reply = response.text.filter(|t| !t.trim().is_empty());
                break;
            }
        }
        if self.kind == AgentKind::ESCALATION {
            self.complete_escalation(&input, &mut actions, &mut reply);
        }
        if crate::catalog::spec(self.kind).background {
            // Background agents never message a contact.
            reply = None;
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
            .current()
            .get(&input.tenant.slug, input.agent.as_str())
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
        let system = self.system_prompt(prompt, input)?;
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

    /// The prompt file rendered for `input`, with why the agent has the conversation when it was
    /// handed to it.
    fn system_prompt(&self, prompt: &Prompt, input: &TurnInput) -> Result<String, TurnError> {
        let mut system = prompt
            .render(&json!({"tenant": input.tenant, "contact": input.contact, "history": input.history, "agent": input.agent, "lead": input.lead, "handoff": input.handoff}))
            .map_err(|e| TurnError::Permanent(e.to_string()))?;
        match &input.handoff {
            // A follow-up the agent scheduled is due: it writes first.
            Some(h) if h.from == runtime::events::FOLLOW_UP_TIMER => system.push_str(&format!(
                "\n\nA follow-up you scheduled is due: write to the contact first. Your note: {}.",
                h.reason
            )),
            // The next agent always learns why it has the conversation, whatever its template says.
            Some(h) => system.push_str(&format!(
                "\n\nYou have just been given this conversation by the {} agent. Reason: {}. Continue it from where it is; do not greet the contact again.",
                h.from, h.reason
            )),
            None => {}
        }
        Ok(system)
    }

    /// The rendered system prompt and the tools offered (with their schemas) for a turn of
    /// `input`: what every turn assembles before counting tokens.
    pub fn system_and_tools(
        &self,
        input: &TurnInput,
    ) -> Result<(String, Vec<ToolSpec>), TurnError> {
        let prompt = self.prompt_for(input)?;
        Ok((self.system_prompt(&prompt, input)?, self.tools(&prompt)))
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
            input.agent.as_str(),
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

    /// Whether this agent can run `tool` now (its dependencies present).
    fn offers(&self, tool: &str) -> bool {
        match tools::find(tool).map(|t| t.effect) {
            Some(Effect::Control | Effect::Message) => true,
            Some(Effect::Knowledge) => self.knowledge.is_some(),
            Some(Effect::Action | Effect::Read) => self
                .actions
                .as_ref()
                .is_some_and(|a| a.handler.supports(tool)),
            None => false,
        }
    }

    /// The agents `handoff` may pass to: the conversational kinds that run, but this one and the
    /// escalation agent (reached through `escalate`).
    fn handoff_targets(&self) -> Vec<AgentKind> {
        self.running
            .iter()
            .copied()
            .filter(|k| {
                *k != self.kind
                    && *k != AgentKind::ESCALATION
                    && !crate::catalog::spec(*k).background
            })
            .collect()
    }

    /// The tools the prompt lists that this agent can run, as offered to the model.
    fn tools(&self, prompt: &Prompt) -> Vec<ToolSpec> {
        prompt
            .front
            .tools
            .iter()
            .filter(|t| self.offers(t))
            .filter_map(|name| {
                let def = tools::find(name)?;
                let mut parameters = tools::schema(name)?.clone();
                if def.name == "handoff" {
                    parameters["properties"]["to_agent"]["enum"] = json!(self.handoff_targets());
                }
                Some(ToolSpec {
                    name: def.name.into(),
                    description: def.description.into(),
                    parameters,
                })
            })
            .collect()
    }

    /// The escalation rule of the prompt file that fires on this turn, if any: a keyword the
    /// contact wrote (Arabic-aware), or too many turns without progress.
    fn escalation_rule(&self, prompt: &Prompt, input: &TurnInput) -> Option<String> {
        if self.kind == AgentKind::ESCALATION {
            return None;
        }
        let rules = &prompt.front.escalation;
        let said: Vec<&str> = input.new_messages.iter().map(|m| m.text.as_str()).collect();
        if let Some(keyword) = rules.keywords.iter().find(|k| {
            said.iter()
                .any(|text| knowledge_base::normalize::contains(text, k))
        }) {
            return Some(format!(
                "the contact wrote the escalation keyword {keyword:?}"
            ));
        }
        if let Some(n) = rules.max_turns_without_progress
            && input.has_new_messages()
            && input.turns_without_progress >= n
        {
            return Some(format!(
                "{n} turns in a row without progress (no action, no handoff)"
            ));
        }
        None
    }

    /// The escalation agent's duties hold whatever the model did: the conversation is assigned
    /// to a rep, the rep gets a summary, and the contact is told.
    fn complete_escalation(
        &self,
        input: &TurnInput,
        actions: &mut Vec<TurnAction>,
        reply: &mut Option<String>,
    ) {
        let reason = input.handoff.as_ref().map_or_else(
            || "the contact needs a person".to_owned(),
            |h| h.reason.clone(),
        );
        let called = |actions: &[TurnAction], tool: &str| {
            actions
                .iter()
                .any(|a| matches!(a, TurnAction::Tool(t) if t.tool == tool))
        };
        if !called(actions, "notify_rep") {
            let last = input
                .history
                .iter()
                .rev()
                .find(|h| h.role == Speaker::Contact)
                .map(|h| h.text.as_str())
                .or(input.new_messages.last().map(|m| m.text.as_str()))
                .unwrap_or("");
            let summary: String = format!("{reason}. The contact's last message: {last}")
                .chars()
                .take(2000)
                .collect();
            actions.push(TurnAction::Tool(ToolAction {
                tool: "notify_rep".into(),
                arguments: json!({ "summary": summary }),
            }));
        }
        if !called(actions, "assign_conversation") {
            let reason: String = reason.chars().take(1000).collect();
            actions.push(TurnAction::Tool(ToolAction {
                tool: "assign_conversation".into(),
                arguments: json!({ "reason": reason }),
            }));
        }
        // Nothing but the hand-over: no further handoff.
        actions.retain(|a| matches!(a, TurnAction::Tool(_)));
        if reply.is_none() {
            *reply = Some(handed_to_person(contact_language(input)).to_owned());
        }
    }

    /// Runs one tool call. The arguments are checked against the tool's schema, in code; the
    /// tenant and contact come from the conversation, never from them. A tool the prompt does not
    /// list is refused. Returns what the model is told (`{"error": …}` when refused).
    async fn call_tool(
        &self,
        input: &TurnInput,
        prompt: &Prompt,
        name: &str,
        arguments: &str,
        actions: &mut Vec<TurnAction>,
    ) -> Value {
        if !prompt.front.tools.iter().any(|t| t == name) || !self.offers(name) {
            return json!({"error": format!("the tool {name:?} is not available to this agent; use only the tools you were given")});
        }
        let args = match serde_json::from_str::<Value>(if arguments.trim().is_empty() {
            "{}"
        } else {
            arguments
        }) {
            Ok(args) => args,
            Err(e) => return json!({"error": format!("the arguments are not valid JSON: {e}")}),
        };
        if let Err(reason) = tools::validate(name, &args) {
            return json!({"error": reason});
        }
        let text = |key: &str| {
            args.get(key)
                .and_then(Value::as_str)
                .map(str::trim)
                .unwrap_or_default()
                .to_owned()
        };
        let ctx = input.action_context();
        match tools::find(name).map(|t| t.effect) {
            Some(Effect::Control) if name == "escalate" => {
                actions.push(self.escalation(text("reason")));
                json!({"ok": true, "note": "A person takes over: the escalation agent tells the contact. Do not reply."})
            }
            Some(Effect::Control) => {
                let targets = self.handoff_targets();
                let Some(to) = AgentKind::parse(&text("to_agent")).filter(|k| targets.contains(k))
                else {
                    let names: Vec<&str> = targets.iter().map(|k| k.as_str()).collect();
                    return json!({"error": format!("to_agent must be one of: {}", names.join(", "))});
                };
                actions.push(TurnAction::Handoff {
                    to_agent: to,
                    reason: text("reason"),
                });
                json!({"ok": true, "next_agent": to, "note": "The next agent answers the contact now. Do not reply."})
            }
            Some(Effect::Message) => {
                if input.channel != Some(Channel::Whatsapp) {
                    let on = input.channel.map_or("no channel", Channel::as_str);
                    return json!({"error": format!("templates are WhatsApp's; this conversation is on {on}: write a reply instead")});
                }
                let parameters = args
                    .get("parameters")
                    .and_then(Value::as_array)
                    .map(|p| {
                        p.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                actions.push(TurnAction::SendTemplate {
                    template: text("template"),
                    language: text("language"),
                    parameters,
                });
                json!({"ok": true, "note": "The template is sent when this turn ends, before any reply."})
            }
            Some(Effect::Knowledge) => self.search_knowledge(input, &args).await,
            Some(Effect::Read) => {
                let Some(handler) = &self.actions else {
                    return json!({"error": "not available"});
                };
                match handler.read(ctx, name, &args).await {
                    Ok(result) => result,
                    Err(ActionError::Refused(reason)) => json!({"error": reason}),
                    Err(ActionError::Failed(e)) => {
                        tracing::warn!(tool = name, "read tool failed: {e}");
                        json!({"error": "this could not be looked up just now"})
                    }
                }
            }
            Some(Effect::Action) => {
                let Some(handler) = &self.actions else {
                    return json!({"error": "not available"});
                };
                let action = ToolAction {
                    tool: name.to_owned(),
                    arguments: args,
                };
                let earlier: Vec<ToolAction> = actions
                    .iter()
                    .filter_map(|a| match a {
                        TurnAction::Tool(t) => Some(t.clone()),
                        _ => None,
                    })
                    .collect();
                match handler.rehearse(ctx, &earlier, &action).await {
                    Ok(result) => {
                        actions.push(TurnAction::Tool(action));
                        json!({"ok": true, "result": result})
                    }
                    Err(ActionError::Refused(reason)) => json!({"error": reason}),
                    Err(ActionError::Failed(e)) => {
                        tracing::warn!(tool = name, "action rehearsal failed: {e}");
                        json!({"error": "this could not be done just now"})
                    }
                }
            }
            None => json!({"error": "unknown tool"}),
        }
    }

    async fn search_knowledge(&self, input: &TurnInput, args: &Value) -> Value {
        let query = args
            .get("query")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim();
        let limit = args
            .get("limit")
            .and_then(Value::as_u64)
            .map_or(KNOWLEDGE_RESULTS, |n| n as usize)
            .min(KNOWLEDGE_MAX_RESULTS);
        let Some(kb) = &self.knowledge else {
            return json!({"error": "the knowledge base is not available"});
        };
        let query_language = knowledge_base::normalize::detect(query).code();
        // The tenant is the conversation's, never the model's.
        match kb.search(input.tenant.id, query, limit).await {
            Ok(hits) if hits.is_empty() => {
                json!({"query_language": query_language, "results": [], "note": "Nothing in the knowledge base matches: say you will check, do not guess."})
            }
            Ok(hits) => {
                json!({"query_language": query_language, "results": hits.iter().map(|h| json!({
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
}

/// What the contact hears when a person takes the conversation over and the escalation agent's
/// model gave no words of its own.
pub fn handed_to_person(language: Language) -> &'static str {
    match language {
        Language::Arabic => "شكرًا لصبرك. حوّلنا محادثتك إلى أحد زملائنا، وسيتواصل معك هنا قريبًا.",
        Language::English => {
            "Thank you for your patience. A colleague has your conversation now and will reply here shortly."
        }
    }
}
