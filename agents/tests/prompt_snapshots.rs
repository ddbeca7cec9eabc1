//! Every prompt file rendered with the fixture context (`agents::check::fixture`) and compared
//! with its snapshot in `tests/snapshots/`, so a prompt edit shows as a reviewable diff of what
//! the model will read. After an intended edit, refresh the snapshots with
//! `WASIT_UPDATE_SNAPSHOTS=1 cargo test -p agents --test prompt_snapshots` and commit them.

use std::path::{Path, PathBuf};

use agents::prompt::{PromptSet, prompt_files};

fn snapshot_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name.replace('/', "__").replace(".md", ".txt"))
}

#[test]
fn every_prompt_renders_as_its_snapshot() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let prompts = root.join("../prompts");
    let snapshots = root.join("tests/snapshots");
    let update = std::env::var_os("WASIT_UPDATE_SNAPSHOTS").is_some();
    let set = PromptSet::load_dir(&prompts).expect("the shipped prompts load");
    let mut expected = Vec::new();
    let mut stale = Vec::new();
    for (slug, path) in prompt_files(&prompts) {
        let kind = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let prompt = set.get(slug.as_deref().unwrap_or(""), &kind).unwrap();
        let rendered = prompt
            .render(&agents::check::fixture(&kind))
            .expect("renders");
        let front = &prompt.front;
        let text = format!(
            "file: {}\nagent: {}\ntools: {}\ntemperature: {}, max_output_tokens: {}\nescalation keywords: {}\nrouting keywords: {}\n---\n{rendered}\n",
            prompt.name,
            front.agent,
            front.tools.join(", "),
            front.temperature,
            front.max_output_tokens,
            front.escalation.keywords.join(", "),
            front.routing.keywords.join(", "),
        );
        let file = snapshot_path(&snapshots, &prompt.name);
        expected.push(file.clone());
        if update {
            std::fs::write(&file, &text).unwrap();
        } else if std::fs::read_to_string(&file).ok().as_deref() != Some(text.as_str()) {
            stale.push(format!(
                "{} no longer renders as {}:\n{text}",
                prompt.name,
                file.display()
            ));
        }
    }
    // A snapshot whose prompt file is gone is stale too.
    for entry in std::fs::read_dir(&snapshots).unwrap() {
        let path = entry.unwrap().path();
        if !expected.contains(&path) {
            if update {
                std::fs::remove_file(&path).unwrap();
            } else {
                stale.push(format!("{} has no prompt file", path.display()));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "{}\n\nIf the change is intended: WASIT_UPDATE_SNAPSHOTS=1 cargo test -p agents --test prompt_snapshots",
        stale.join("\n\n")
    );
    let shared = prompt_files(&prompts)
        .iter()
        .filter(|(slug, _)| slug.is_none())
        .count();
    assert_eq!(shared, 18, "one shared prompt file per agent kind");
}
