//! The eighteen agent kinds of `shared/design/agents.md`: what each may do. A prompt file may
//! list only tools its kind may call (`wasit prompts check` refuses the others).

/// One agent kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentSpec {
    pub kind: &'static str,
    /// The CRM area it belongs to.
    pub module: &'static str,
    /// Background agents react to CRM events and never message a contact.
    pub background: bool,
    /// The tools it may call (beyond reading its context).
    pub tools: &'static [&'static str],
}

const fn spec(
    kind: &'static str,
    module: &'static str,
    background: bool,
    tools: &'static [&'static str],
) -> AgentSpec {
    AgentSpec {
        kind,
        module,
        background,
        tools,
    }
}

const fn conversational(
    kind: &'static str,
    module: &'static str,
    tools: &'static [&'static str],
) -> AgentSpec {
    spec(kind, module, false, tools)
}

const fn background(
    kind: &'static str,
    module: &'static str,
    tools: &'static [&'static str],
) -> AgentSpec {
    spec(kind, module, true, tools)
}

/// Every agent kind, in the design's order.
pub const AGENTS: &[AgentSpec] = &[
    conversational(
        "intake",
        "leads",
        &["create_lead", "update_contact", "handoff"],
    ),
    conversational(
        "qualifier",
        "leads",
        &["update_lead", "set_qualification", "handoff"],
    ),
    background("scorer", "leads", &["set_lead_score"]),
    background("router", "leads", &["assign_lead"]),
    conversational(
        "sales",
        "deals",
        &[
            "search_knowledge",
            "update_lead",
            "create_deal",
            "handoff",
            "escalate",
        ],
    ),
    conversational(
        "objection_handler",
        "deals",
        &["search_knowledge", "handoff", "escalate"],
    ),
    conversational(
        "knowledge",
        "knowledge-base",
        &["search_knowledge", "handoff"],
    ),
    conversational(
        "follow_up",
        "deals",
        &["send_template", "schedule_follow_up", "mark_lost"],
    ),
    conversational(
        "meeting_scheduler",
        "meetings",
        &[
            "find_slots",
            "book_meeting",
            "reschedule_meeting",
            "cancel_meeting",
        ],
    ),
    conversational(
        "proposal_writer",
        "presentations",
        &["create_proposal", "send_proposal"],
    ),
    background("deal_coach", "deals", &["update_deal", "create_task"]),
    background("forecaster", "deals", &["write_forecast"]),
    conversational(
        "affiliate_recruiter",
        "affiliates",
        &["create_affiliate_application", "handoff"],
    ),
    conversational(
        "affiliate_onboarding",
        "affiliates",
        &["complete_onboarding_step", "issue_referral_code"],
    ),
    conversational("affiliate_coach", "affiliates", &["get_affiliate_stats"]),
    conversational(
        "commission",
        "commissions",
        &["calculate_commission", "open_commission_dispute"],
    ),
    conversational(
        "guarantee",
        "guarantee",
        &["open_guarantee_claim", "attach_evidence", "request_refund"],
    ),
    conversational(
        "escalation",
        "notifications",
        &["assign_conversation", "notify_rep"],
    ),
];

/// The spec of `kind`, if it is one of the eighteen.
pub fn agent(kind: &str) -> Option<&'static AgentSpec> {
    AGENTS.iter().find(|a| a.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eighteen_kinds_each_with_known_tools() {
        assert_eq!(AGENTS.len(), 18);
        let mut kinds: Vec<&str> = AGENTS.iter().map(|a| a.kind).collect();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), 18, "kinds are distinct");
        for a in AGENTS {
            for tool in a.tools {
                assert!(
                    crate::prompt::KNOWN_TOOLS.contains(tool),
                    "{}: unknown tool {tool}",
                    a.kind
                );
            }
            // Background agents never message a contact, so they never escalate or hand off.
            if a.background {
                assert!(!a.tools.iter().any(|t| ["handoff", "escalate"].contains(t)));
            }
        }
    }
}
