//! `docs/AGENTS.md` shows the agent map as the code defines it: its table of the eighteen kinds
//! (between the `agents:catalog` markers) says, cell for cell, what `agents::catalog::AGENTS`
//! says. A change to either without the other fails here.

use agents::catalog::AGENTS;

#[test]
fn the_agents_page_states_the_catalog() {
    let doc = include_str!("../../docs/AGENTS.md");
    let start = doc
        .find("<!-- agents:catalog")
        .expect("docs/AGENTS.md has the agents:catalog table");
    let end = doc
        .find("<!-- /agents:catalog -->")
        .expect("the table's end marker");
    let rows: Vec<Vec<String>> = doc[start..end]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), AGENTS.len(), "one row per agent kind");
    for (row, spec) in rows.iter().zip(AGENTS) {
        let kind = if spec.background {
            format!("`{}` (background)", spec.kind)
        } else {
            format!("`{}`", spec.kind)
        };
        let tools: Vec<String> = spec.tools.iter().map(|t| format!("`{t}`")).collect();
        let expected = [
            kind,
            spec.module.to_owned(),
            spec.trigger.to_owned(),
            spec.role.to_owned(),
            tools.join(", "),
            spec.escalates_when.to_owned(),
        ];
        assert_eq!(
            row.as_slice(),
            expected.as_slice(),
            "the row of {}",
            spec.kind
        );
    }
}
