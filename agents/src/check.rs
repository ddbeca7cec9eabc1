//! `wasit prompts check`: everything a prompt engineer can get wrong in a prompt directory,
//! reported as `file:line: message` — what loading refuses (front matter, template syntax,
//! unknown tools), and what loading lets through but a turn would suffer from: a variable the
//! template is never given, a tool the agent kind may not call, an agent kind that does not
//! exist, a system prompt that renders larger than its budget.

use std::path::Path;

use runtime::llm::TokenCounter;
use serde_json::json;

use crate::catalog;
use crate::prompt::{Prompt, PromptError};

/// The most tokens a rendered system prompt may take (before history, tools and the reply): a
/// quarter of an 8k window, so the conversation keeps room.
pub const MAX_PROMPT_TOKENS: u32 = 2048;

/// Every variable a template receives (`tenant`, `contact`, `history`, `agent`) with its fields.
pub const VARIABLES: &[&str] = &[
    "tenant",
    "tenant.id",
    "tenant.slug",
    "tenant.name",
    "contact",
    "contact.id",
    "contact.name",
    "contact.locale",
    "history",
    "agent",
    "lead",
    "lead.id",
    "lead.status",
    "lead.score",
    "lead.qualification",
    "handoff",
    "handoff.from",
    "handoff.reason",
];

/// What a template is rendered with when checked (and in the prompt snapshots): the longest
/// realistic values.
pub fn fixture(agent: &str) -> serde_json::Value {
    json!({
        "tenant": {"id": "00000000-0000-0000-0000-000000000001", "slug": "riyadh-gold",
                   "name": "شركة ذهب الرياض للمعادن الثمينة"},
        "contact": {"id": "00000000-0000-0000-0000-000000000002",
                    "name": "عبدالرحمن بن سعيد", "locale": "ar-SA"},
        "history": [
            {"role": "contact", "text": "السلام عليكم، كم سعر سبيكة ١٠٠ غرام؟"},
            {"role": "agent", "text": "وعليكم السلام! يسعدني مساعدتك."}
        ],
        "agent": agent,
        "lead": {"id": "00000000-0000-0000-0000-000000000003", "status": "contacted", "score": 72,
                 "qualification": {"company": "مؤسسة النخبة للمجوهرات", "need": "سبائك ذهب عيار ٢٤ للاستثمار",
                                   "budget": "٢٠٠ ألف ريال", "timeline": "خلال شهر"}},
        "handoff": {"from": "qualifier", "reason": "العميل مؤهل ويريد عرض سعر لسبائك ١٠٠ غرام"},
    })
}

/// The result of checking a directory.
#[derive(Debug, Default)]
pub struct Report {
    pub files: usize,
    pub problems: Vec<PromptError>,
}

/// The first line of `path`'s text containing `needle` (1 if none).
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map_or(1, |i| i + 1)
}

/// Checks every prompt file below `dir`.
pub fn check_dir(dir: &Path, counter: &dyn TokenCounter) -> Report {
    let mut report = Report::default();
    if !dir.is_dir() {
        report.problems.push(PromptError {
            path: dir.to_owned(),
            line: 0,
            message: "not a directory of prompt files".into(),
        });
        return report;
    }
    for (_, path) in crate::prompt::prompt_files(dir) {
        report.files += 1;
        report.problems.extend(check_file(&path, counter));
    }
    report
}

/// Checks one prompt file.
pub fn check_file(path: &Path, counter: &dyn TokenCounter) -> Vec<PromptError> {
    let prompt = match Prompt::load(path) {
        Ok(p) => p,
        Err(e) => return vec![e],
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let problem = |needle: &str, message: String| PromptError {
        path: path.to_owned(),
        line: line_of(&text, needle),
        message,
    };
    let mut problems = Vec::new();
    let kind = prompt.front.agent.as_str();
    match catalog::agent(kind) {
        None => problems.push(problem(
            "agent",
            format!(
                "there is no agent kind {kind:?}; the kinds are {}",
                catalog::AGENTS
                    .iter()
                    .map(|a| a.kind.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
        Some(spec) => {
            for tool in &prompt.front.tools {
                if !spec.tools.contains(&tool.as_str()) {
                    problems.push(problem(
                        "tools",
                        format!(
                            "the {kind} agent may not call {tool:?}; it may call {}",
                            spec.tools.join(", ")
                        ),
                    ));
                }
            }
        }
    }
    let mut unknown: Vec<String> = prompt
        .variables()
        .into_iter()
        // The qualification object holds whatever was learnt (company, need, budget, …).
        .filter(|v| !VARIABLES.contains(&v.as_str()) && !v.starts_with("lead.qualification."))
        .collect();
    unknown.sort();
    for v in unknown {
        let root = v.split('.').next().unwrap_or(&v).to_owned();
        let fields = VARIABLES
            .iter()
            .filter(|known| known.starts_with(&format!("{root}.")))
            .copied()
            .collect::<Vec<_>>();
        let hint = if fields.is_empty() {
            "the template receives tenant, contact, lead, handoff, history and agent".to_owned()
        } else {
            format!("{root} has {}", fields.join(", "))
        };
        problems.push(problem(&v, format!("unknown variable {v}: {hint}")));
    }
    match prompt.render(&fixture(kind)) {
        Err(e) => problems.push(e),
        Ok(rendered) => {
            let tokens = counter.count(&rendered);
            if tokens > MAX_PROMPT_TOKENS {
                problems.push(problem(
                    "+++",
                    format!(
                        "the system prompt renders to {tokens} tokens, over the budget of {MAX_PROMPT_TOKENS}; shorten it"
                    ),
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use runtime::llm::tokens::TiktokenCounter;

    use super::*;

    #[test]
    fn the_shipped_prompts_pass() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../prompts");
        let counter = TiktokenCounter::for_model("gpt-4o-mini");
        let report = check_dir(&dir, counter.as_ref());
        assert!(report.files >= 2);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }

    #[test]
    fn every_kind_of_mistake_is_reported_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write(
            "knowledge.md",
            "+++\nagent = \"knowledge\"\ndescription = \"d\"\ntools = [\"search_knowledge\", \"request_refund\"]\n+++\nمرحبا {{ contact.nmae }} من {{ tenant.name }}\n{{ price }}\n",
        );
        write(
            "wizard.md",
            "+++\nagent = \"wizard\"\ndescription = \"d\"\n+++\nhi\n",
        );
        write(
            "sales.md",
            &format!(
                "+++\nagent = \"sales\"\ndescription = \"d\"\n+++\n{}\n",
                "ذهب ".repeat(5000)
            ),
        );
        write("guarantee.md", "+++\nagent = \"guarantee\"\n+++\nhi\n");
        let counter = TiktokenCounter::for_model("gpt-4o-mini");
        let report = check_dir(dir.path(), counter.as_ref());
        assert_eq!(report.files, 4);
        let lines: Vec<String> = report
            .problems
            .iter()
            .map(|p| {
                format!(
                    "{}:{}: {}",
                    p.path.file_name().unwrap().to_string_lossy(),
                    p.line,
                    p.message
                )
            })
            .collect();
        let has = |start: &str, part: &str| {
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with(start) && l.contains(part)),
                "no {start}…{part} in {lines:#?}"
            );
        };
        has("guarantee.md:2:", "description");
        has("knowledge.md:4:", "may not call \"request_refund\"");
        has(
            "knowledge.md:6:",
            "unknown variable contact.nmae: contact has contact.id",
        );
        has("knowledge.md:7:", "unknown variable price");
        has("sales.md:1:", "over the budget of 2048");
        has("wizard.md:2:", "there is no agent kind \"wizard\"");
        assert_eq!(lines.len(), 6, "{lines:#?}");
    }
}
