//! BM25 as sparse vectors, for an index that applies IDF itself (Qdrant's `Modifier::Idf`):
//! a document's vector holds each term's saturated, length-normalised frequency; a query's holds
//! 1 per term. The same analyser serves both, routed per word by script: Arabic words go through
//! the Arabic analyser ([`crate::normalize::terms`] and an Arabic stop list), Latin words through
//! the English one (stop list, light plural folding).
//!
//! The stop lists are ours. Stock Arabic lists carry ذهب ("went", also "gold"), which a gold
//! business cannot lose; a test keeps it out.

use std::collections::BTreeMap;

use crate::normalize::terms;

/// BM25's term-frequency saturation.
pub const K1: f32 = 1.2;
/// BM25's length normalisation.
pub const B: f32 = 0.75;

/// Arabic function words as written; compared after the same analysis as the text.
const ARABIC_STOP: &[&str] = &[
    "في",
    "من",
    "على",
    "إلى",
    "عن",
    "مع",
    "هذا",
    "هذه",
    "ذلك",
    "تلك",
    "هو",
    "هي",
    "هم",
    "أنا",
    "نحن",
    "أنت",
    "أنتم",
    "التي",
    "الذي",
    "الذين",
    "ما",
    "ماذا",
    "لا",
    "لم",
    "لن",
    "هل",
    "أن",
    "إن",
    "أو",
    "أم",
    "ثم",
    "قد",
    "كان",
    "كانت",
    "يكون",
    "كل",
    "بعض",
    "غير",
    "بين",
    "عند",
    "حتى",
    "إذا",
    "لكن",
    "أيضا",
    "فقط",
    "كما",
    "لقد",
    "منذ",
    "هناك",
    "هنا",
    "أي",
    "ولا",
    "به",
    "بها",
    "له",
    "لها",
    "لهم",
    "عليه",
    "عليها",
    "فيه",
    "فيها",
    "منه",
    "منها",
    "يا",
];

/// [`ARABIC_STOP`] analysed as text is ([`terms`]), so spelling variants of a stop word match.
fn arabic_stop() -> &'static std::collections::HashSet<String> {
    static SET: std::sync::OnceLock<std::collections::HashSet<String>> = std::sync::OnceLock::new();
    SET.get_or_init(|| ARABIC_STOP.iter().flat_map(|w| terms(w)).collect())
}

/// English function words.
const ENGLISH_STOP: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "do", "does", "for", "from", "has",
    "have", "how", "i", "if", "in", "into", "is", "it", "its", "me", "my", "no", "not", "of", "on",
    "or", "our", "so", "that", "the", "their", "then", "there", "these", "they", "this", "to",
    "us", "was", "we", "were", "what", "when", "where", "which", "who", "will", "with", "you",
    "your", "can", "i'm", "please",
];

fn is_arabic_word(word: &str) -> bool {
    word.chars()
        .next()
        .is_some_and(|c| ('\u{0600}'..='\u{06FF}').contains(&c))
}

/// Light English folding: plurals and possessives to their singular (`policies` → `policy`,
/// `bars` → `bar`), leaving short words and `-ss` alone.
fn fold_english(word: &str) -> String {
    let word = word
        .strip_suffix("'s")
        .unwrap_or(word)
        .trim_end_matches('\'');
    if word.len() > 4
        && let Some(stem) = word.strip_suffix("ies")
    {
        return format!("{stem}y");
    }
    if word.len() > 3 && word.ends_with('s') && !word.ends_with("ss") && !word.ends_with("us") {
        return word[..word.len() - 1].to_owned();
    }
    word.to_owned()
}

/// The index terms of `text`: Arabic and English words analysed each by their own rules, stop
/// words dropped, digits kept (prices, carats and weights are what people search for).
pub fn index_terms(text: &str) -> Vec<String> {
    terms(text)
        .into_iter()
        .filter_map(|word| {
            if is_arabic_word(&word) {
                (!arabic_stop().contains(&word)).then_some(word)
            } else {
                let folded = fold_english(&word.replace('’', "'"));
                let stop = |w: &str| ENGLISH_STOP.contains(&w) || w.chars().count() < 2;
                (!stop(&word) && !stop(&folded)).then_some(folded)
            }
        })
        .collect()
}

/// A term's index in the sparse space: FNV-1a over its UTF-8 bytes. Stable across versions and
/// machines (a reindex must land every term where queries look for it).
pub fn term_id(term: &str) -> u32 {
    term.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// A sparse vector, indices ascending and distinct.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SparseVector {
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

impl SparseVector {
    fn from_map(map: BTreeMap<u32, f32>) -> Self {
        let (indices, values) = map.into_iter().unzip();
        Self { indices, values }
    }

    /// Σ over shared indices of the products (what the index scores before IDF).
    pub fn dot(&self, other: &Self) -> f32 {
        let (mut i, mut j, mut sum) = (0, 0, 0.0);
        while i < self.indices.len() && j < other.indices.len() {
            match self.indices[i].cmp(&other.indices[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    sum += self.values[i] * other.values[j];
                    i += 1;
                    j += 1;
                }
            }
        }
        sum
    }
}

/// A document's BM25 vector: `tf·(k1+1) / (tf + k1·(1 − b + b·len/avg_len))` per term, where
/// `len` is the document's number of index terms and `avg_len` the collection's average (it
/// must be real: with a made-up average, long and short chunks are scored unfairly).
pub fn document_vector(text: &str, avg_len: f32) -> (SparseVector, usize) {
    let words = index_terms(text);
    let len = words.len();
    let mut tf: BTreeMap<u32, f32> = BTreeMap::new();
    for w in &words {
        *tf.entry(term_id(w)).or_default() += 1.0;
    }
    let norm = K1 * (1.0 - B + B * len as f32 / avg_len.max(1.0));
    for v in tf.values_mut() {
        *v = *v * (K1 + 1.0) / (*v + norm);
    }
    (SparseVector::from_map(tf), len)
}

/// A query's vector: 1 for each distinct index term.
pub fn query_vector(text: &str) -> SparseVector {
    SparseVector::from_map(
        index_terms(text)
            .iter()
            .map(|w| (term_id(w), 1.0))
            .collect(),
    )
}

/// Inverse document frequency as Qdrant's `Modifier::Idf` computes it:
/// `ln(1 + (n − df + 0.5) / (df + 0.5))` for a term in `df` of `n` documents.
pub fn idf(n: usize, df: usize) -> f32 {
    (1.0 + (n as f32 - df as f32 + 0.5) / (df as f32 + 0.5)).ln()
}

/// BM25 over documents held in memory: the reference the index backends are checked against,
/// and the scorer of the retrieval evaluation.
#[derive(Debug, Default)]
pub struct MemoryIndex {
    documents: Vec<SparseVector>,
    /// Documents containing each term.
    df: std::collections::HashMap<u32, usize>,
}

impl MemoryIndex {
    /// Indexes `texts` (the collection's average length is computed from them first).
    pub fn new<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        let texts: Vec<&str> = texts.into_iter().collect();
        let lengths: Vec<usize> = texts.iter().map(|t| index_terms(t).len()).collect();
        let avg_len = lengths.iter().sum::<usize>() as f32 / lengths.len().max(1) as f32;
        let mut index = Self::default();
        for text in texts {
            let (vector, _) = document_vector(text, avg_len);
            for term in &vector.indices {
                *index.df.entry(*term).or_default() += 1;
            }
            index.documents.push(vector);
        }
        index
    }

    /// The `limit` best documents for `query`, best first, as (position, score); documents
    /// sharing no term with the query are not returned.
    pub fn search(&self, query: &str, limit: usize) -> Vec<(usize, f32)> {
        let n = self.documents.len();
        let mut q = query_vector(query);
        for (term, weight) in q.indices.iter().zip(q.values.iter_mut()) {
            *weight = idf(n, self.df.get(term).copied().unwrap_or(0));
        }
        let mut scored: Vec<(usize, f32)> = self
            .documents
            .iter()
            .enumerate()
            .map(|(i, d)| (i, q.dot(d)))
            .filter(|(_, score)| *score > 0.0)
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(limit);
        scored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gold_is_never_a_stop_word_and_function_words_are() {
        assert_eq!(index_terms("ذهب"), ["ذهب"]);
        assert_eq!(index_terms("ذهبَ العميل إلى المحل"), ["ذهب", "عميل", "محل"]);
        assert_eq!(
            index_terms("ما هو سعر الذهب في الرياض؟"),
            ["سعر", "ذهب", "رياض"]
        );
        assert_eq!(
            index_terms("What is the price of gold bars?"),
            ["price", "gold", "bar"]
        );
        assert_eq!(
            index_terms("I'm asking about the customer’s claims, not yours."),
            ["asking", "about", "customer", "claim"]
        );
        // Stop words match in any spelling, and never take a content word with them.
        assert!(index_terms("إلى الى الي التي فيها حتى حتي").is_empty());
        assert!(!arabic_stop().contains("ذهب"));
    }

    #[test]
    fn english_plurals_fold_and_short_words_stay() {
        for (word, want) in [
            ("policies", "policy"),
            ("bars", "bar"),
            ("claims", "claim"),
            ("class", "class"),
            ("bonus", "bonus"),
            ("gas", "gas"),
            ("customer's", "customer"),
        ] {
            assert_eq!(fold_english(word), want);
        }
    }

    #[test]
    fn term_ids_are_stable() {
        // FNV-1a 32 reference values.
        assert_eq!(term_id(""), 0x811c_9dc5);
        assert_eq!(term_id("a"), 0xe40c_292c);
        assert_eq!(term_id("foobar"), 0xbf9c_f968);
    }

    #[test]
    fn bm25_weights_saturate_and_normalise_by_length() {
        let (short, len) = document_vector("ضمان الذهب", 10.0);
        assert_eq!(len, 2);
        let (long, _) = document_vector(
            "ضمان الذهب مع التوصيل والاسترجاع والفاتورة والشحن والتغليف والتأمين والمتابعة",
            10.0,
        );
        let q = query_vector("الضمان");
        // The same single mention weighs more in a short chunk than in a long one.
        assert!(q.dot(&short) > q.dot(&long));
        // Repetition helps, with diminishing returns (saturation at k1 + 1).
        let once = q.dot(&document_vector("ضمان", 1.0).0);
        let twice = q.dot(&document_vector("ضمان ضمان", 1.0).0);
        let many = q.dot(&document_vector(&"ضمان ".repeat(50), 1.0).0);
        assert!(once < twice && twice < many && many < K1 + 1.0);
        // Rare terms count for more than common ones.
        let index = MemoryIndex::new(["ضمان ذهب", "سعر ذهب", "توصيل ذهب"]);
        let hits = index.search("ضمان الذهب", 3);
        assert_eq!(hits.first().map(|h| h.0), Some(0));
        assert!(idf(3, 1) > idf(3, 3));
        assert!(index.search("كلمة غائبة", 3).is_empty());
        // Query terms are distinct, whatever the spelling.
        assert_eq!(query_vector("الضمانُ ضمان بالضمان").indices.len(), 1);
    }
}
