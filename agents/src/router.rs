//! The agent router: which agent answers a turn. The conversation's active agent is durable (it
//! is saved with every turn); the router moves the conversation on when the contact's message or
//! the CRM says another agent should have it:
//!
//! 1. the contact's new message contains a routing keyword of another agent's prompt file
//!    (`[routing] keywords`, matched Arabic-aware) — a guarantee claim goes to `guarantee`, a
//!    request to meet to `meeting_scheduler`;
//! 2. the first message of a new contact goes to `intake`;
//! 3. once the contact has a lead, `intake` gives way to `qualifier`; once the lead is
//!    qualified, `intake` and `qualifier` give way to `sales`.
//!
//! Background agents and the escalation agent are never routed to from a message. Handoffs
//! between agents are the agents' own (the `handoff` tool); the router only picks where a
//! contact's message goes.

use std::sync::Arc;

use runtime::turn::{Route, Router, TurnInput};

use runtime::AgentKind;

use crate::catalog;
use crate::prompt::PromptStore;

/// Routes with the keywords of the live prompt files, to the agent kinds that run.
#[derive(Debug)]
pub struct AgentRouter {
    prompts: Arc<PromptStore>,
    /// The kinds that have a pool: never route to one that does not.
    running: Vec<AgentKind>,
}

impl AgentRouter {
    pub fn new(prompts: Arc<PromptStore>, running: impl IntoIterator<Item = AgentKind>) -> Self {
        Self {
            prompts,
            running: running.into_iter().collect(),
        }
    }

    fn runs(&self, kind: AgentKind) -> bool {
        self.running.contains(&kind)
    }

    fn to(&self, kind: AgentKind, reason: String) -> Option<Route> {
        self.runs(kind).then_some(Route {
            agent: kind,
            reason,
        })
    }
}

impl Router for AgentRouter {
    fn route(&self, input: &TurnInput) -> Option<Route> {
        let prompts = self.prompts.current();
        let said: Vec<&str> = input.new_messages.iter().map(|m| m.text.as_str()).collect();
        let active = input.agent;

        // 1. A routing keyword: the first agent (in the design's order) whose keyword the contact
        // wrote. The active agent keeps the conversation if one of its own keywords matches.
        let keyword_of = |kind: AgentKind| -> Option<String> {
            let prompt = prompts.get(&input.tenant.slug, kind.as_str())?;
            prompt
                .front
                .routing
                .keywords
                .iter()
                .find(|k| {
                    said.iter()
                        .any(|text| knowledge_base::normalize::contains(text, k))
                })
                .cloned()
        };
        if keyword_of(active).is_none() {
            let hit = catalog::AGENTS
                .iter()
                .filter(|a| !a.background && a.kind != AgentKind::ESCALATION && a.kind != active)
                .filter(|a| self.runs(a.kind))
                .find_map(|a| keyword_of(a.kind).map(|k| (a.kind, k)));
            if let Some((kind, keyword)) = hit {
                return self.to(
                    kind,
                    format!("the contact wrote {keyword:?}, which {kind} handles"),
                );
            }
        }

        // 2. A new contact starts with intake.
        let first_message = input.history.is_empty() && input.summary.is_none();
        if input.lead.is_none() && first_message && active != AgentKind::FIRST {
            return self.to(
                AgentKind::FIRST,
                "the first message of a new contact".into(),
            );
        }

        // 3. The lead's progress.
        match (&input.lead, active) {
            (Some(lead), AgentKind::Intake | AgentKind::Qualifier)
                if lead.status == "qualified" =>
            {
                self.to(
                    AgentKind::Sales,
                    "the lead is qualified: the sales conversation takes over".into(),
                )
            }
            (Some(lead), AgentKind::Intake)
                if matches!(lead.status.as_str(), "new" | "contacted") =>
            {
                self.to(
                    AgentKind::Qualifier,
                    "the lead exists: qualification comes next".into(),
                )
            }
            _ => None,
        }
    }
}
