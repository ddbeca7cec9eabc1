//! Token counting and context budgets.
//!
//! Each model is counted with its own tokenizer: tiktoken's encoding for OpenAI model names
//! (`o200k_base` for unknown names, a close estimate for other vendors' models), the embedded
//! model's own BPE for the local model. A message is counted once, the first time a turn sees it,
//! and the count is stored on its row with the encoding's name (`messages.token_count`,
//! `token_encoding`); later turns add stored counts instead of re-counting the history.
//!
//! [`fit`] decides how much history a turn can show: the window minus the output budget, the
//! system prompt, the tool schemas, the rolling summary and the new messages; what is left is
//! filled with the newest history that fits. Older messages are dropped (oldest first) and
//! folded into the conversation's rolling summary.

use std::sync::Arc;

use super::ToolSpec;

/// Counts tokens the way one model does.
pub trait TokenCounter: Send + Sync {
    /// The encoding's name, stored next to counts so a count is reused only by the same encoding.
    fn encoding(&self) -> &str;
    fn count(&self, text: &str) -> u32;
}

/// Tokens a chat format adds around each message (ChatML: `<|im_start|>`, the role, a newline,
/// `<|im_end|>`, a newline).
pub const MESSAGE_OVERHEAD: u32 = 5;
/// Tokens the reply is primed with (`<|im_start|>assistant\n` and the like).
pub const REPLY_PRIMING: u32 = 3;

/// tiktoken's encodings, built once per process.
pub struct TiktokenCounter {
    name: &'static str,
    bpe: &'static tiktoken_rs::CoreBPE,
}

impl std::fmt::Debug for TiktokenCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TiktokenCounter")
            .field("name", &self.name)
            .finish()
    }
}

impl TiktokenCounter {
    /// The encoding OpenAI uses for `model`; `o200k_base` when the name is not one of OpenAI's.
    /// `o200k_base` and `cl100k_base` count through [`FastCounter`] (same counts, faster).
    pub fn for_model(model: &str) -> Arc<dyn TokenCounter> {
        use tiktoken_rs::tokenizer::Tokenizer as T;
        match tiktoken_rs::tokenizer::get_tokenizer(model) {
            Some(T::Cl100kBase) => FastCounter::cl100k(),
            Some(T::P50kBase | T::P50kEdit) => Arc::new(Self {
                name: "p50k_base",
                bpe: tiktoken_rs::p50k_base_singleton(),
            }),
            Some(T::R50kBase | T::Gpt2) => Arc::new(Self {
                name: "r50k_base",
                bpe: tiktoken_rs::r50k_base_singleton(),
            }),
            Some(T::O200kHarmony) => Arc::new(Self {
                name: "o200k_harmony",
                bpe: tiktoken_rs::o200k_harmony_singleton(),
            }),
            Some(T::O200kBase) | None => FastCounter::o200k(),
        }
    }

    /// tiktoken-rs itself, unaccelerated: what [`FastCounter`] is checked against.
    pub fn reference(model: &str) -> Self {
        use tiktoken_rs::tokenizer::Tokenizer as T;
        match tiktoken_rs::tokenizer::get_tokenizer(model) {
            Some(T::Cl100kBase) => Self {
                name: "cl100k_base",
                bpe: tiktoken_rs::cl100k_base_singleton(),
            },
            _ => Self {
                name: "o200k_base",
                bpe: tiktoken_rs::o200k_base_singleton(),
            },
        }
    }
}

impl TokenCounter for TiktokenCounter {
    fn encoding(&self) -> &str {
        self.name
    }

    fn count(&self, text: &str) -> u32 {
        u32::try_from(self.bpe.encode_ordinary(text).len()).unwrap_or(u32::MAX)
    }
}

/// tiktoken's `cl100k_base` split pattern (tiktoken-rs keeps it private).
const CL100K_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// tiktoken's counts for `o200k_base` and `cl100k_base`, faster. tiktoken splits text with a
/// pattern whose `\s+(?!\S)` needs look-ahead, so it runs on `fancy-regex`, and that split is
/// most of its time. Here the same pattern without the look-ahead (`…|\s+`) runs on the `regex`
/// crate's automata, and the look-ahead's effect is restored after each match: a run of two or
/// more whitespace characters (not ending in a newline, which the earlier `\s*[\r\n]+` takes)
/// followed by more text gives its last character back to the next piece. Each piece is then
/// counted by tiktoken-rs itself, through a per-thread memo (words repeat). A test checks the
/// counts equal tiktoken-rs's on Arabic, English, digits, whitespace and punctuation.
pub struct FastCounter {
    name: &'static str,
    bpe: &'static tiktoken_rs::CoreBPE,
    split: regex::Regex,
    /// Distinguishes this encoding's entries in the per-thread memo.
    id: u8,
}

impl std::fmt::Debug for FastCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastCounter")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Entries kept per thread before the memo is cleared.
const MEMO_LIMIT: usize = 200_000;

type Memo = std::collections::HashMap<(u8, Box<str>), u32>;

thread_local! {
    static MEMO: std::cell::RefCell<Memo> = std::cell::RefCell::new(Memo::new());
}

impl FastCounter {
    pub fn o200k() -> Arc<dyn TokenCounter> {
        static C: std::sync::OnceLock<Arc<FastCounter>> = std::sync::OnceLock::new();
        C.get_or_init(|| {
            Arc::new(Self::new(
                "o200k_base",
                0,
                tiktoken_rs::o200k_base_singleton(),
                tiktoken_rs::O200K_BASE_PAT_STR,
            ))
        })
        .clone()
    }

    pub fn cl100k() -> Arc<dyn TokenCounter> {
        static C: std::sync::OnceLock<Arc<FastCounter>> = std::sync::OnceLock::new();
        C.get_or_init(|| {
            Arc::new(Self::new(
                "cl100k_base",
                1,
                tiktoken_rs::cl100k_base_singleton(),
                CL100K_PATTERN,
            ))
        })
        .clone()
    }

    fn new(name: &'static str, id: u8, bpe: &'static tiktoken_rs::CoreBPE, pattern: &str) -> Self {
        let without_lookahead = pattern
            .strip_suffix(r"|\s+(?!\S)|\s+")
            .expect("tiktoken's pattern ends with the whitespace alternatives");
        let split = regex::Regex::new(&format!(r"{without_lookahead}|\s+"))
            .expect("the pattern without look-ahead is a regex");
        Self {
            name,
            bpe,
            split,
            id,
        }
    }

    /// tiktoken's pieces of `text`, in order.
    pub fn pieces<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let mut out = Vec::new();
        let mut at = 0;
        while let Some(m) = self.split.find_at(text, at) {
            let mut end = m.end();
            let piece = m.as_str();
            if end < text.len()
                && !piece.ends_with(['\r', '\n'])
                && piece.chars().all(char::is_whitespace)
                && let Some((last, _)) = piece.char_indices().last().filter(|(i, _)| *i > 0)
            {
                // `\s+(?!\S)`: the last whitespace character goes with what follows.
                end = m.start() + last;
            }
            out.push(&text[m.start()..end]);
            at = end;
        }
        out
    }
}

impl TokenCounter for FastCounter {
    fn encoding(&self) -> &str {
        self.name
    }

    fn count(&self, text: &str) -> u32 {
        MEMO.with(|memo| {
            let mut memo = memo.borrow_mut();
            if memo.len() > MEMO_LIMIT {
                memo.clear();
            }
            let mut total = 0u32;
            for piece in self.pieces(text) {
                let key = (self.id, Box::<str>::from(piece));
                let n = match memo.get(&key) {
                    Some(n) => *n,
                    None => {
                        let n = u32::try_from(self.bpe.encode_ordinary(piece).len())
                            .unwrap_or(u32::MAX);
                        memo.insert(key, n);
                        n
                    }
                };
                total = total.saturating_add(n);
            }
            total
        })
    }
}

/// The context window of a model known by name; 8,192 when unknown (a cautious default that
/// every current chat model exceeds; set `LLM_CONTEXT_WINDOW` for the real one).
pub fn known_context_window(model: &str) -> u32 {
    let known = [
        "gpt-4o", "gpt-4.1", "gpt-4-", "gpt-3.5", "gpt-5", "o1", "o3", "o4",
    ];
    if known.iter().any(|p| model.starts_with(p)) {
        u32::try_from(tiktoken_rs::model::get_context_size(model)).unwrap_or(u32::MAX)
    } else {
        8_192
    }
}

/// The tokens the tool schemas add to a request (name, description and parameters as JSON).
pub fn tools_tokens(counter: &dyn TokenCounter, tools: &[ToolSpec]) -> u32 {
    tools
        .iter()
        .map(|t| {
            counter.count(&t.name)
                + counter.count(&t.description)
                + counter.count(&t.parameters.to_string())
                + MESSAGE_OVERHEAD
        })
        .sum()
}

/// A message's tokens inside a request: its text plus the format's overhead.
pub fn message_tokens(counter: &dyn TokenCounter, text: &str) -> u32 {
    counter.count(text) + MESSAGE_OVERHEAD
}

/// What [`fit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    /// History items before this index are dropped (and belong in the rolling summary).
    pub keep_from: usize,
    /// Tokens of the whole request before the output: fixed parts plus the kept history.
    pub prompt_tokens: u32,
    /// The fixed parts alone do not fit: the turn cannot be answered by this model as is.
    pub overflow: bool,
}

/// Keeps the newest history that fits in `window - max_output - fixed`, less a 5 % margin. `history` holds each
/// item's tokens (overhead included), oldest first. Runs in O(kept) and never re-counts text.
pub fn fit(window: u32, max_output: u32, fixed: u32, history: &[u32]) -> Fit {
    // A margin for what is not counted exactly: chat-format differences between vendors, the
    // embedded model's tool instructions, and a tool round's call and result.
    let budget = window
        .saturating_sub(max_output)
        .saturating_sub(window / 20);
    if fixed > budget {
        return Fit {
            keep_from: history.len(),
            prompt_tokens: fixed,
            overflow: true,
        };
    }
    let mut used = fixed;
    let mut keep_from = history.len();
    for (i, tokens) in history.iter().enumerate().rev() {
        if used + tokens > budget {
            break;
        }
        used += tokens;
        keep_from = i;
    }
    Fit {
        keep_from,
        prompt_tokens: used,
        overflow: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiktoken_counts_exactly_with_the_model_encoding() {
        let gpt4o = TiktokenCounter::for_model("gpt-4o-mini");
        assert_eq!(gpt4o.encoding(), "o200k_base");
        assert_eq!(gpt4o.count("hello world"), 2);
        let gpt4 = TiktokenCounter::for_model("gpt-4");
        assert_eq!(gpt4.encoding(), "cl100k_base");
        assert_eq!(gpt4.count("hello world"), 2);
        // Arabic costs more tokens per word; the count is exact, not an estimate.
        let arabic = gpt4o.count("مرحبا، أريد شراء سبيكة ذهب عيار ٢٤");
        assert!(arabic > 6, "{arabic}");
        assert_eq!(arabic, gpt4o.count("مرحبا، أريد شراء سبيكة ذهب عيار ٢٤"));
        assert_eq!(
            TiktokenCounter::for_model("llama-3-70b").encoding(),
            "o200k_base"
        );
    }

    #[test]
    fn the_fast_counter_counts_exactly_what_tiktoken_counts() {
        let samples = [
            "السلام عليكم، أريد شراء سبيكة ذهب عيار ٢٤ بوزن ١٠٠ غرام، كم السعر اليوم؟",
            "Hello,  I'd like   to book a meeting\n\n  tomorrow at 10:30 — OK?",
            "  leading spaces and trailing spaces   ",
            "tabs\tand\t\tmixed \u{a0}nbsp\u{2009}thin\r\n\r\nCRLF lines\n   \n\tindented",
            "Numbers 1234567 and 3.14159, prices $2,350.75 / ٣٥٠٠ ر.س",
            "ابغى اعرف عن برنامج المسوقين بالعمولة وكيف احسب عمولتي 🙂👍🏽",
            "CAPS lock SHOUTING'S and don't won't we'll I'M O'NEIL",
            "mixed العربية and English في نفس الجملة!!! ???",
            "x\n",
            " ",
            "",
            "a  ",
            "   \n",
            "😀 😀  😀",
        ];
        for model in ["gpt-4o-mini", "gpt-4"] {
            let fast = TiktokenCounter::for_model(model);
            let reference = TiktokenCounter::reference(model);
            assert_eq!(fast.encoding(), reference.encoding());
            for text in samples {
                assert_eq!(fast.count(text), reference.count(text), "{model}: {text:?}");
            }
            // Random strings over an alphabet of the characters the pattern treats specially.
            let alphabet: Vec<char> = " \t\n\r\u{a0}\u{2009}aZqÉé'sdTLL09٣٤ذهبـًّ,.!?$/-—🙂👍🏽\u{301}"
                .chars()
                .collect();
            let mut seed = 0x9E37_79B9_7F4A_7C15u64;
            for _ in 0..3000 {
                let len = (seed % 24) as usize;
                let text: String = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        alphabet[(seed % alphabet.len() as u64) as usize]
                    })
                    .collect();
                assert_eq!(
                    fast.count(&text),
                    reference.count(&text),
                    "{model}: {text:?}"
                );
            }
            // Every sample joined with every other, so each boundary is tried.
            for a in samples {
                for b in samples {
                    let text = format!("{a}{b}");
                    assert_eq!(
                        fast.count(&text),
                        reference.count(&text),
                        "{model}: {text:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn fit_keeps_the_newest_history_and_drops_the_oldest_first() {
        // window 100, output 20 → 80 for the prompt; fixed parts take 30 → 50 for history.
        let history = [10, 20, 15, 25, 5];
        let f = fit(100, 20, 30, &history);
        // From the newest: 5, 25, 15 = 45 fits; + 20 = 65 does not.
        assert_eq!(f.keep_from, 2);
        assert_eq!(f.prompt_tokens, 75);
        assert!(!f.overflow);
        // Everything fits in a big window.
        assert_eq!(fit(10_000, 400, 30, &history).keep_from, 0);
        // A gap does not let an older, smaller message jump the queue: history stays contiguous.
        assert_eq!(fit(100, 20, 30, &[1, 1, 60, 1]).keep_from, 3);
        // The fixed parts alone overflow.
        let f = fit(100, 20, 90, &history);
        assert!(f.overflow);
        assert_eq!(f.keep_from, history.len());
    }

    #[test]
    fn known_windows() {
        assert_eq!(known_context_window("gpt-4o-mini"), 128_000);
        assert_eq!(known_context_window("my-local-llama"), 8_192);
    }
}
