//! Chunking an article's Markdown body for retrieval: by headings, then paragraphs, then
//! sentences, then words, each chunk within a token budget (counted with the real tokenizer),
//! consecutive chunks of a section overlapping by a few sentences, and every chunk carrying the
//! path of headings above it for citations.

use runtime::llm::TokenCounter;

/// How big chunks are, in tokens of the counter given to [`chunk`].
#[derive(Debug, Clone, Copy)]
pub struct ChunkOptions {
    /// The most tokens a chunk's text may have.
    pub max_tokens: u32,
    /// About how many tokens of the previous chunk's end a chunk repeats (same section only).
    pub overlap_tokens: u32,
}

impl Default for ChunkOptions {
    fn default() -> Self {
        Self {
            max_tokens: 320,
            overlap_tokens: 48,
        }
    }
}

/// One chunk of an article.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Position in the article, from 0.
    pub ordinal: u32,
    /// The headings above the chunk, outermost first (empty before the first heading).
    pub heading_path: Vec<String>,
    pub text: String,
    /// Tokens of `text`, counted.
    pub tokens: u32,
}

impl Chunk {
    /// What the index sees: the heading path, then the text (headings are good search terms).
    pub fn indexed_text(&self) -> String {
        if self.heading_path.is_empty() {
            self.text.clone()
        } else {
            format!("{}\n{}", self.heading_path.join(" › "), self.text)
        }
    }
}

/// A section: its heading path and its paragraphs.
struct Section {
    path: Vec<String>,
    paragraphs: Vec<String>,
}

/// Splits Markdown into sections at ATX headings (`#` to `######`), ignoring `#` lines inside
/// fenced code blocks; a fenced block stays one paragraph.
fn sections(markdown: &str) -> Vec<Section> {
    let mut out = vec![Section {
        path: Vec::new(),
        paragraphs: Vec::new(),
    }];
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut paragraph: Vec<&str> = Vec::new();
    let mut fenced = false;
    let flush = |paragraph: &mut Vec<&str>, out: &mut Vec<Section>| {
        let text = paragraph.join("\n").trim().to_owned();
        paragraph.clear();
        if !text.is_empty()
            && let Some(section) = out.last_mut()
        {
            section.paragraphs.push(text);
        }
    };
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fenced = !fenced;
            paragraph.push(line);
            continue;
        }
        if fenced {
            paragraph.push(line);
            continue;
        }
        let level = trimmed.chars().take_while(|c| *c == '#').count();
        let title = trimmed[level..].trim();
        if (1..=6).contains(&level)
            && trimmed[level..].starts_with([' ', '\t'])
            && !title.is_empty()
        {
            flush(&mut paragraph, &mut out);
            stack.retain(|(l, _)| *l < level);
            stack.push((level, title.trim_end_matches('#').trim().to_owned()));
            out.push(Section {
                path: stack.iter().map(|(_, t)| t.clone()).collect(),
                paragraphs: Vec::new(),
            });
        } else if trimmed.is_empty() {
            flush(&mut paragraph, &mut out);
        } else {
            paragraph.push(line);
        }
    }
    flush(&mut paragraph, &mut out);
    out.retain(|s| !s.paragraphs.is_empty());
    out
}

/// Sentences of a paragraph: split after `.`, `!`, `?`, `؟`, `؛`, `;` or a line break, each
/// keeping its punctuation.
fn sentences(paragraph: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = paragraph.chars().peekable();
    while let Some(c) = chars.next() {
        current.push(c);
        let ends = matches!(c, '.' | '!' | '?' | '؟' | '؛' | ';' | '\n');
        if c == '\n' || (ends && chars.peek().is_none_or(|n| n.is_whitespace())) {
            let s = current.trim().to_owned();
            if !s.is_empty() {
                out.push(s);
            }
            current.clear();
        }
    }
    let s = current.trim().to_owned();
    if !s.is_empty() {
        out.push(s);
    }
    out
}

/// Pieces of `text` of at most `max` tokens each: the text itself, else its sentences, else
/// runs of words (a single word longer than the budget is cut by characters).
fn pieces(text: &str, counter: &dyn TokenCounter, max: u32) -> Vec<String> {
    if counter.count(text) <= max {
        return vec![text.to_owned()];
    }
    let parts = sentences(text);
    if parts.len() > 1 {
        return parts.iter().flat_map(|s| pieces(s, counter, max)).collect();
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() > 1 {
        // A word over the budget on its own (a URL, a data URI) is cut first.
        let units = words.iter().flat_map(|w| pieces(w, counter, max));
        return pack(units, " ", counter, max, 0)
            .into_iter()
            .map(|(text, _)| text)
            .collect();
    }
    // One enormous word (a URL, a hash): cut by characters, each piece the longest that fits,
    // searched within a window of a few characters per token (so a megabyte costs linear work).
    let chars: Vec<char> = text.chars().collect();
    let fits = |a: usize, b: usize| counter.count(&chars[a..b].iter().collect::<String>()) <= max;
    let mut out = Vec::new();
    let mut start = 0;
    while start < chars.len() {
        let window = (start + max as usize * 16).min(chars.len());
        // Invariant: `good` fits (one character is a few tokens at most; max ≥ 8), `bad` not.
        let mut good = start + 1;
        if fits(start, window) {
            good = window;
        } else {
            let mut bad = window;
            while bad - good > 1 {
                let mid = good + (bad - good) / 2;
                if fits(start, mid) {
                    good = mid;
                } else {
                    bad = mid;
                }
            }
        }
        out.push(chars[start..good].iter().collect());
        start = good;
    }
    out
}

/// Packs units (each within `max`) greedily into texts of at most `max` tokens joined by `sep`;
/// each text after the first starts with the last units of the one before, up to `overlap`
/// tokens, when they fit. Returns each text with its token count.
fn pack(
    units: impl IntoIterator<Item = String>,
    sep: &str,
    counter: &dyn TokenCounter,
    max: u32,
    overlap: u32,
) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut fresh = 0; // units in `current` not yet emitted
    for unit in units {
        let mut candidate = current.clone();
        candidate.push(unit.clone());
        if counter.count(&candidate.join(sep)) <= max {
            current = candidate;
            fresh += 1;
            continue;
        }
        if fresh > 0 {
            let text = current.join(sep);
            let tokens = counter.count(&text);
            out.push((text, tokens));
        }
        // The overlap: the previous text's tail, as long as it stays small and fits with `unit`.
        let mut tail: Vec<String> = Vec::new();
        for previous in current.iter().rev() {
            let mut longer = vec![previous.clone()];
            longer.extend(tail.iter().cloned());
            let with_unit = [longer.clone(), vec![unit.clone()]].concat().join(sep);
            if counter.count(&longer.join(sep)) > overlap || counter.count(&with_unit) > max {
                break;
            }
            tail = longer;
        }
        current = tail;
        current.push(unit);
        fresh = 1;
    }
    if fresh > 0 {
        let text = current.join(sep);
        let tokens = counter.count(&text);
        out.push((text, tokens));
    }
    out
}

/// Chunks a Markdown body. Every word of the body is in some chunk; no chunk's text exceeds
/// `options.max_tokens` (taken as at least 8).
pub fn chunk(markdown: &str, counter: &dyn TokenCounter, options: ChunkOptions) -> Vec<Chunk> {
    let max = options.max_tokens.max(8);
    let mut out = Vec::new();
    for section in sections(markdown) {
        // Paragraphs stay whole when they fit; long ones become sentences (then words).
        let units: Vec<String> = section
            .paragraphs
            .iter()
            .flat_map(|p| pieces(p, counter, max))
            .collect();
        for (text, tokens) in pack(units, "\n\n", counter, max, options.overlap_tokens) {
            out.push(Chunk {
                ordinal: u32::try_from(out.len()).unwrap_or(u32::MAX),
                heading_path: section.path.clone(),
                text,
                tokens,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::llm::tokens::TiktokenCounter;

    fn counter() -> std::sync::Arc<dyn TokenCounter> {
        TiktokenCounter::for_model("gpt-4o-mini")
    }

    const ARTICLE: &str = "Intro line before any heading.

# ضمان الذهب

كل سبيكة مضمونة. يمكنك استرجاع المبلغ خلال ٣٠ يومًا؟ نعم، بشروط.

## المطالبة

قدّم المطالبة مع الفاتورة.

```
# not a heading
code
```

# Delivery

We deliver in Riyadh within two days. Outside Riyadh it takes a week.
";

    #[test]
    fn sections_follow_headings_and_code_fences_are_not_headings() {
        let chunks = chunk(ARTICLE, counter().as_ref(), ChunkOptions::default());
        let paths: Vec<Vec<String>> = chunks.iter().map(|c| c.heading_path.clone()).collect();
        assert_eq!(
            paths,
            vec![
                vec![],
                vec!["ضمان الذهب".to_owned()],
                vec!["ضمان الذهب".to_owned(), "المطالبة".to_owned()],
                vec!["Delivery".to_owned()],
            ]
        );
        assert!(chunks[2].text.contains("# not a heading"));
        assert_eq!(chunks[3].ordinal, 3);
        assert_eq!(
            chunks[2].indexed_text(),
            format!("ضمان الذهب › المطالبة\n{}", chunks[2].text)
        );
    }

    #[test]
    fn chunks_stay_within_the_budget_overlap_and_lose_nothing() {
        let counter = counter();
        let sentence = |i: usize| {
            if i.is_multiple_of(2) {
                format!("الجملة رقم {i} عن سعر الذهب عيار ٢٤ والتوصيل إلى الرياض.")
            } else {
                format!("Sentence {i} explains the gold guarantee and how claims are paid.")
            }
        };
        let body = format!(
            "# Long\n\n{}\n\n{}",
            (0..40).map(sentence).collect::<Vec<_>>().join(" "),
            (40..60).map(sentence).collect::<Vec<_>>().join(" ")
        );
        let options = ChunkOptions {
            max_tokens: 80,
            overlap_tokens: 20,
        };
        let chunks = chunk(&body, counter.as_ref(), options);
        assert!(chunks.len() > 5, "{} chunks", chunks.len());
        for c in &chunks {
            assert_eq!(c.tokens, counter.count(&c.text), "stored count is exact");
            assert!(
                c.tokens <= 80,
                "chunk {} has {} tokens",
                c.ordinal,
                c.tokens
            );
        }
        // Every sentence is somewhere.
        for i in 0..60 {
            let s = sentence(i);
            assert!(chunks.iter().any(|c| c.text.contains(&s)), "lost: {s}");
        }
        // Consecutive chunks share their boundary sentence.
        let overlapping = chunks
            .windows(2)
            .filter(|w| {
                let last = sentences(&w[0].text).pop().unwrap_or_default();
                w[1].text.starts_with(&last)
            })
            .count();
        assert!(
            overlapping >= chunks.len() / 2,
            "{overlapping} of {} overlap",
            chunks.len()
        );
    }

    #[test]
    fn sentences_split_on_arabic_punctuation() {
        assert_eq!(
            sentences("هل يوجد ضمان؟ نعم؛ لمدة سنة. Thanks!"),
            vec!["هل يوجد ضمان؟", "نعم؛", "لمدة سنة.", "Thanks!"]
        );
        // A line ends a sentence (list items), whatever follows.
        assert_eq!(sentences("- a\n- b"), vec!["- a", "- b"]);
        // A decimal point is not the end of a sentence.
        assert_eq!(
            sentences("It costs 2.5 grams."),
            vec!["It costs 2.5 grams."]
        );
    }

    #[test]
    fn an_enormous_word_is_cut_to_the_budget() {
        let counter = counter();
        let word = "ذهب".repeat(400);
        let chunks = chunk(
            &word,
            counter.as_ref(),
            ChunkOptions {
                max_tokens: 50,
                overlap_tokens: 0,
            },
        );
        assert!(chunks.len() > 1);
        assert!(chunks.iter().all(|c| c.tokens <= 50));
        assert_eq!(
            chunks.iter().map(|c| c.text.as_str()).collect::<String>(),
            word
        );
        // Inside a sentence with other words, too; and 100 KB without a space stays quick (linear).
        let options = ChunkOptions {
            max_tokens: 50,
            overlap_tokens: 0,
        };
        let text = format!("see {} for the price", "ab12".repeat(2000));
        assert!(
            chunk(&text, counter.as_ref(), options)
                .iter()
                .all(|c| c.tokens <= 50)
        );
        let blob = "x9Qz".repeat(25_000);
        let pieces = chunk(&blob, counter.as_ref(), options);
        assert!(pieces.iter().all(|c| c.tokens <= 50));
    }
}
