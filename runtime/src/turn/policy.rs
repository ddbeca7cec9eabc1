//! A turn's decisions that need no I/O: which agent answers, whether a handed-to agent answers at
//! once, the contact's language, and the outcome of a turn whose model stayed down.

use serde_json::json;

use crate::domain::AgentKind;

use super::{HandoffNote, Route, Router, TurnAction, TurnAudit, TurnInput, TurnOutcome};

/// Routes `input` with `router`: the chosen agent answers, and `input.handoff` tells it why it has
/// the conversation (`from` is the agent it was taken from).
pub fn route(router: &dyn Router, input: &mut TurnInput) {
    if let Some(Route { agent: to, reason }) = router.route(input)
        && to != input.agent
    {
        tracing::debug!(conversation = ?input.conversation, from = %input.agent, %to, reason, "routed");
        let from = std::mem::replace(&mut input.agent, to);
        input.handoff.get_or_insert(HandoffNote {
            from: from.to_string(),
            reason,
        });
    }
}

/// Handoffs in a row (without the contact writing) after which the next agent waits for the
/// contact instead of answering at once.
pub const MAX_HANDOFF_HOPS: u32 = 3;

/// Whether the agent `outcome` handed the conversation to answers now, in a turn of its own: yes,
/// unless the chain of agents passing the conversation on is already long, when it waits for the
/// contact. A person is never kept waiting: a handoff to the escalation agent always runs.
pub fn answers_at_once(input: &TurnInput, outcome: &TurnOutcome) -> bool {
    let handed_to = outcome.actions.iter().find_map(|a| match a {
        TurnAction::Handoff { to_agent, .. } => Some(*to_agent),
        _ => None,
    });
    let hops = if input.has_new_messages() {
        0
    } else {
        input.handoff_hops
    };
    handed_to.is_some_and(|to| hops < MAX_HANDOFF_HOPS || to == AgentKind::ESCALATION)
}

/// The language a contact writes in, for the runtime's own messages (apologies, budget notes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Arabic,
    English,
}

/// Arabic when the contact's new messages contain Arabic letters, or contain no Latin letters and
/// the contact's locale is Arabic; English otherwise.
pub fn contact_language(input: &TurnInput) -> Language {
    let arabic = |c: char| matches!(c, '\u{0600}'..='\u{06FF}' | '\u{0750}'..='\u{077F}' | '\u{FB50}'..='\u{FDFF}' | '\u{FE70}'..='\u{FEFF}');
    let texts = || input.new_messages.iter().map(|m| m.text.as_str());
    let locale_ar = input
        .contact
        .as_ref()
        .and_then(|c| c.locale.as_deref())
        .is_some_and(|l| l.to_ascii_lowercase().starts_with("ar"));
    if texts().any(|t| t.chars().any(arabic))
        || (locale_ar && !texts().any(|t| t.chars().any(|c| c.is_ascii_alphabetic())))
    {
        Language::Arabic
    } else {
        Language::English
    }
}

/// The apology sent when the model stayed unavailable past every retry.
pub fn apology(language: Language) -> &'static str {
    match language {
        Language::Arabic => "نعتذر منك، نواجه مشكلة تقنية مؤقتة. سيتواصل معك أحد زملائنا قريبًا.",
        Language::English => {
            "We are sorry: we have a temporary technical problem. A colleague will get back to you shortly."
        }
    }
}

/// The outcome of a turn whose model calls kept failing: an apology in the contact's language
/// and the conversation handed to a human, so the messages are answered, not lost or dropped.
pub fn unavailable_outcome(input: &TurnInput, reason: &str) -> TurnOutcome {
    TurnOutcome {
        replies: vec![apology(contact_language(input)).to_owned()],
        actions: vec![TurnAction::Escalate {
            reason: format!("the language model stayed unavailable after every retry: {reason}"),
        }],
        audit: TurnAudit {
            agent: input.agent,
            model: "none".into(),
            tool_calls: json!([{"fallback": "model_unavailable", "error": reason}]),
            ..TurnAudit::default()
        },
        ..TurnOutcome::default()
    }
}
