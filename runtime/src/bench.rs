//! Helpers the benchmarks share (`cargo bench -p … -- --flag value`): their flags and the
//! process's peak memory. Not used by the product.

use std::str::FromStr;

/// The value after `--name` on the command line, if any.
pub fn flag(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// The value after `--name`, parsed, or `default` when it is absent or does not parse.
pub fn arg<T: FromStr>(name: &str, default: T) -> T {
    flag(name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Peak resident memory of this process so far, in MiB (`VmHWM`; 0 where /proc is missing).
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A turn's input for benchmarks and the agents' tests: tenant `riyadh-gold` (ذهب الرياض), an
/// Arabic-speaking contact, the conversation's `channel` WhatsApp, one new Arabic message `text`,
/// and nothing else (callers add history, a lead or a handoff as they need).
pub fn sample_input(agent: crate::AgentKind, text: &str) -> crate::turn::TurnInput {
    use crate::ids::{ContactId, ConversationId, MessageId, TenantId};
    use crate::turn::{ContactInfo, TenantInfo, TenantLlm, TurnInput, TurnMessage};
    TurnInput {
        tenant: TenantInfo {
            id: TenantId(uuid::Uuid::new_v4()),
            slug: "riyadh-gold".into(),
            name: "ذهب الرياض".into(),
        },
        contact: Some(ContactInfo {
            id: ContactId(uuid::Uuid::new_v4()),
            name: None,
            locale: Some("ar".into()),
        }),
        conversation: Some(ConversationId(uuid::Uuid::new_v4())),
        event: None,
        agent,
        history: Vec::new(),
        new_messages: vec![TurnMessage {
            id: MessageId(uuid::Uuid::new_v4()),
            seq: 100_000,
            kind: crate::MessageKind::Text,
            text: text.into(),
            tokens: None,
        }],
        summary: None,
        lead: None,
        handoff: None,
        handoff_hops: 0,
        turns_without_progress: 0,
        channel: Some(crate::Channel::Whatsapp),
        llm: TenantLlm::default(),
    }
}
