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

/// Tokens a chat format adds around each message (role markers and separators).
pub const MESSAGE_OVERHEAD: u32 = 4;
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
    pub fn for_model(model: &str) -> Arc<dyn TokenCounter> {
        use tiktoken_rs::tokenizer::Tokenizer as T;
        let (name, bpe): (&'static str, &'static tiktoken_rs::CoreBPE) =
            match tiktoken_rs::tokenizer::get_tokenizer(model) {
                Some(T::Cl100kBase) => ("cl100k_base", tiktoken_rs::cl100k_base_singleton()),
                Some(T::P50kBase | T::P50kEdit) => {
                    ("p50k_base", tiktoken_rs::p50k_base_singleton())
                }
                Some(T::R50kBase | T::Gpt2) => ("r50k_base", tiktoken_rs::r50k_base_singleton()),
                Some(T::O200kHarmony) => ("o200k_harmony", tiktoken_rs::o200k_harmony_singleton()),
                Some(T::O200kBase) | None => ("o200k_base", tiktoken_rs::o200k_base_singleton()),
            };
        Arc::new(Self { name, bpe })
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

/// Keeps the newest history that fits in `window - max_output - fixed`. `history` holds each
/// item's tokens (overhead included), oldest first. Runs in O(kept) and never re-counts text.
pub fn fit(window: u32, max_output: u32, fixed: u32, history: &[u32]) -> Fit {
    let budget = window.saturating_sub(max_output);
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
