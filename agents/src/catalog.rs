//! The eighteen agent kinds of `shared/design/agents.md`: what each may do. A prompt file may
//! list only tools its kind may call (`wasit prompts check` refuses the others).

use runtime::AgentKind;

/// One agent kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentSpec {
    pub kind: AgentKind,
    /// The CRM area it belongs to.
    pub module: &'static str,
    /// Background agents react to CRM events and never message a contact (`commission` also
    /// answers questions, so it is not one).
    pub background: bool,
    /// What starts a turn of it.
    pub trigger: &'static str,
    pub role: &'static str,
    /// The tools it may call (beyond reading its context).
    pub tools: &'static [&'static str],
    /// When it hands the conversation to a human (`—`: never).
    pub escalates_when: &'static str,
}

/// Every agent kind, in the design's order (`docs/AGENTS.md` shows the same table; a test
/// compares the two).
pub const AGENTS: &[AgentSpec] = &[
    AgentSpec {
        kind: AgentKind::Intake,
        module: "leads",
        background: false,
        trigger: "first message from an unknown contact",
        role: "greet, detect language (Arabic-first), capture name, company, need; create the lead",
        tools: &["create_lead", "update_contact", "handoff"],
        escalates_when: "contact asks for a human",
    },
    AgentSpec {
        kind: AgentKind::Qualifier,
        module: "leads",
        background: false,
        trigger: "lead created / new info",
        role: "qualify (budget, authority, need, timeline) through conversation",
        tools: &["update_lead", "set_qualification", "handoff"],
        escalates_when: "contact is hostile or confused after N turns",
    },
    AgentSpec {
        kind: AgentKind::Scorer,
        module: "leads",
        background: true,
        trigger: "lead updated (background)",
        role: "score 0–100 with reasons from conversation and firmographics",
        tools: &["set_lead_score"],
        escalates_when: "—",
    },
    AgentSpec {
        kind: AgentKind::Router,
        module: "leads",
        background: true,
        trigger: "lead qualified or score crosses a threshold (background)",
        role: "assign the lead to a rep or affiliate by sector, territory, load",
        tools: &["assign_lead"],
        escalates_when: "no eligible owner",
    },
    AgentSpec {
        kind: AgentKind::Sales,
        module: "deals",
        background: false,
        trigger: "messages in a qualified lead's conversation",
        role: "the main Arabic-first sales conversation; answers from the knowledge base",
        tools: &[
            "search_knowledge",
            "update_lead",
            "create_deal",
            "handoff",
            "escalate",
        ],
        escalates_when: "pricing exceptions, legal questions, explicit request",
    },
    AgentSpec {
        kind: AgentKind::ObjectionHandler,
        module: "deals",
        background: false,
        trigger: "handoff from `sales` on an objection",
        role: "handle price/trust/timing objections with approved arguments",
        tools: &["search_knowledge", "handoff", "escalate"],
        escalates_when: "objection persists after N turns",
    },
    AgentSpec {
        kind: AgentKind::Knowledge,
        module: "knowledge-base",
        background: false,
        trigger: "a factual question (handoff or router)",
        role: "answer FAQ/product questions with citations from the knowledge base",
        tools: &["search_knowledge", "handoff"],
        escalates_when: "no source found with enough confidence",
    },
    AgentSpec {
        kind: AgentKind::FollowUp,
        module: "deals",
        background: false,
        trigger: "durable timer (no reply for N days, stalled deal)",
        role: "re-engage respectfully; uses an approved template outside the 24-hour window",
        tools: &["send_template", "schedule_follow_up", "mark_lost"],
        escalates_when: "contact opts out (honour it, record consent)",
    },
    AgentSpec {
        kind: AgentKind::MeetingScheduler,
        module: "meetings",
        background: false,
        trigger: "request to meet / deal stage needs a meeting",
        role: "offer slots from rep availability, book, confirm, send invites and reminders",
        tools: &[
            "find_slots",
            "book_meeting",
            "reschedule_meeting",
            "cancel_meeting",
        ],
        escalates_when: "no slot fits after N proposals",
    },
    AgentSpec {
        kind: AgentKind::ProposalWriter,
        module: "presentations",
        background: false,
        trigger: "deal reaches proposal stage / contact asks for an offer",
        role: "draft a proposal or pitch deck from the deal, products and knowledge base",
        tools: &["create_proposal", "send_proposal"],
        escalates_when: "discount beyond the rep's limit (approval)",
    },
    AgentSpec {
        kind: AgentKind::DealCoach,
        module: "deals",
        background: true,
        trigger: "deal stage changes (background)",
        role: "recommend the next best action, flag stalled deals, update probability",
        tools: &["update_deal", "create_task"],
        escalates_when: "—",
    },
    AgentSpec {
        kind: AgentKind::Forecaster,
        module: "deals",
        background: true,
        trigger: "schedule (background)",
        role: "revenue forecast per period from the pipeline, with reasons",
        tools: &["write_forecast"],
        escalates_when: "—",
    },
    AgentSpec {
        kind: AgentKind::AffiliateRecruiter,
        module: "affiliates",
        background: false,
        trigger: "inbound from a prospective affiliate / campaign",
        role: "explain the programme, qualify and register affiliate applicants",
        tools: &["create_affiliate_application", "handoff"],
        escalates_when: "applicant fails checks",
    },
    AgentSpec {
        kind: AgentKind::AffiliateOnboarding,
        module: "affiliates",
        background: false,
        trigger: "application approved",
        role: "walk the affiliate through onboarding steps, materials, referral links",
        tools: &["complete_onboarding_step", "issue_referral_code"],
        escalates_when: "stuck on a step N days",
    },
    AgentSpec {
        kind: AgentKind::AffiliateCoach,
        module: "affiliates",
        background: false,
        trigger: "schedule / affiliate asks about performance",
        role: "performance summaries and tips for affiliates",
        tools: &["get_affiliate_stats"],
        escalates_when: "—",
    },
    AgentSpec {
        kind: AgentKind::Commission,
        module: "commissions",
        background: false,
        trigger: "deal won (background) / affiliate or rep asks",
        role: "calculate commissions by rule, explain them, open disputes",
        tools: &[
            "calculate_commission",
            "open_commission_dispute",
            "approve_commissions",
        ],
        escalates_when: "dispute or amount over threshold (approval)",
    },
    AgentSpec {
        kind: AgentKind::Guarantee,
        module: "guarantee",
        background: false,
        trigger: "customer raises a gold-guarantee claim",
        role: "take the claim, check eligibility, gather evidence, track status, explain refunds",
        tools: &["open_guarantee_claim", "attach_evidence", "request_refund"],
        escalates_when: "every refund (approval), legal threats",
    },
    AgentSpec {
        kind: AgentKind::Escalation,
        module: "notifications",
        background: false,
        trigger: "any agent escalates, or rules fire (sentiment, keywords, repeated failure)",
        role: "hand the conversation to a human with a summary, notify the right rep, keep the contact informed",
        tools: &["assign_conversation", "notify_rep"],
        escalates_when: "— (it is the escalation)",
    },
];

/// The spec of the agent named `kind`, if it is one of the eighteen.
pub fn agent(kind: &str) -> Option<&'static AgentSpec> {
    AgentKind::parse(kind).map(spec)
}

/// The spec of `kind`.
pub fn spec(kind: AgentKind) -> &'static AgentSpec {
    // AGENTS lists the kinds in AgentKind's order (a test checks it).
    &AGENTS[kind as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eighteen_kinds_each_with_known_tools() {
        assert_eq!(AGENTS.len(), 18);
        let kinds: Vec<AgentKind> = AGENTS.iter().map(|a| a.kind).collect();
        assert_eq!(
            kinds,
            AgentKind::ALL,
            "one spec per kind, in AgentKind's order"
        );
        for kind in AgentKind::ALL {
            assert_eq!(spec(*kind).kind, *kind);
        }
        for a in AGENTS {
            for tool in a.tools {
                assert!(
                    crate::tools::find(tool).is_some(),
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
