//! Arabic-aware text handling for matching (search, keywords, retrieval), in one place:
//!
//! - [`normalize`]: Unicode NFKC (presentation forms such as ﻻ become their letters), bidi and
//!   zero-width marks dropped, diacritics and tatweel removed, alef/hamza forms unified, ى → ي,
//!   ة → ه, Eastern Arabic and Persian digits to ASCII, Latin lower-cased.
//! - [`terms`]: the words of a text for matching, with the prefixes و / ب / ف / ك / ل, the
//!   article ال and attached pronouns (كم، هم، ها، نا…) taken off Arabic words that stay long
//!   enough to keep their meaning.
//! - [`detect`]: Arabic, English or mixed, by the letters a text uses.
//!
//! For matching only: what contacts see is never normalised.

use unicode_normalization::UnicodeNormalization;

/// Normalises `text` for matching.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.nfkc() {
        match c {
            // Harakat, tanwin, shadda, sukun, superscript alef, Quranic marks: dropped.
            '\u{064B}'..='\u{065F}' | '\u{0670}' | '\u{06D6}'..='\u{06ED}' => {}
            // Tatweel (kashida) only stretches a word.
            '\u{0640}' => {}
            // Direction and zero-width marks (LRM, RLM, ALM, embeddings, isolates, BOM).
            '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => {}
            '\u{061C}' | '\u{FEFF}' => {}
            'أ' | 'إ' | 'آ' | 'ٱ' => out.push('ا'),
            // Alef maqsura and the Persian ya (U+06CC); the Persian kaf (U+06A9).
            'ى' | 'ی' => out.push('ي'),
            'ک' => out.push('ك'),
            'ة' => out.push('ه'),
            'ؤ' => out.push('و'),
            'ئ' => out.push('ي'),
            '٠'..='٩' => out.push(char::from(b'0' + (c as u32 - '٠' as u32) as u8)),
            '۰'..='۹' => out.push(char::from(b'0' + (c as u32 - '۰' as u32) as u8)),
            c => out.extend(c.to_lowercase()),
        }
    }
    out
}

/// True when `needle` occurs in `haystack` once both are normalised.
pub fn contains(haystack: &str, needle: &str) -> bool {
    let needle = normalize(needle);
    !needle.is_empty() && normalize(haystack).contains(&needle)
}

/// Arabic-script letters (after [`normalize`]).
fn is_arabic(c: char) -> bool {
    matches!(c, '\u{0620}'..='\u{064A}' | '\u{066E}'..='\u{06D3}' | '\u{06FA}'..='\u{06FF}')
}

/// Prefixes taken off Arabic words, longest first, with the letters the rest must keep: the
/// article (alone or after و ب ف ك) leaves at least two, a lone conjunction or preposition at
/// least three (so a root such as وعد or بيع keeps its first letter).
const PREFIXES: [(&str, usize); 9] = [
    ("وال", 2),
    ("بال", 2),
    ("فال", 2),
    ("كال", 2),
    ("لل", 2),
    ("ال", 2),
    ("و", 3),
    ("ب", 3),
    ("ف", 3),
];

/// Attached pronouns taken off the end of Arabic words ("your branch" فرعكم → فرع), when at
/// least three letters remain.
const SUFFIXES: [&str; 6] = ["كم", "هم", "ها", "نا", "كن", "هن"];

/// One normalised word with its prefix (see [`PREFIXES`]) and an attached pronoun
/// ([`SUFFIXES`]) taken off.
fn stem(word: &str) -> &str {
    if !word.chars().next().is_some_and(is_arabic) {
        return word;
    }
    // The pronoun first, so a one-letter prefix is judged on what is left of the word.
    let word = SUFFIXES
        .iter()
        .find_map(|suffix| {
            word.strip_suffix(suffix)
                .filter(|rest| rest.chars().count() >= 3)
        })
        .unwrap_or(word);
    for (prefix, keep) in PREFIXES {
        if let Some(rest) = word.strip_prefix(prefix)
            && rest.chars().count() >= keep
        {
            return rest;
        }
    }
    word
}

/// The words of `text` for matching: normalised, split on anything that is not a letter or a
/// digit, Arabic prefixes taken off. The same analysis serves documents and queries.
pub fn terms(text: &str) -> Vec<String> {
    normalize(text)
        // Apostrophes stay inside words (customer's, don't) and are trimmed from their ends.
        .split(|c: char| !c.is_alphanumeric() && c != '\'' && c != '’')
        .map(|w| w.trim_matches(|c| c == '\'' || c == '’'))
        .filter(|w| !w.is_empty())
        .map(|w| stem(w).to_owned())
        .collect()
}

/// The language of a text, by its letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Arabic,
    English,
    /// Both scripts, neither under a fifth of the letters.
    Mixed,
    /// No letters (digits, symbols, nothing).
    Unknown,
}

impl Language {
    /// `ar`, `en`, `mixed` or `unknown`: as chunks record it and tools report it.
    pub fn code(self) -> &'static str {
        match self {
            Language::Arabic => "ar",
            Language::English => "en",
            Language::Mixed => "mixed",
            Language::Unknown => "unknown",
        }
    }
}

/// Detects the language of `text`: Arabic-script letters against Latin ones.
pub fn detect(text: &str) -> Language {
    let (mut arabic, mut latin) = (0usize, 0usize);
    for c in text.chars() {
        if is_arabic(c) || ('\u{FB50}'..='\u{FEFC}').contains(&c) {
            arabic += 1;
        } else if c.is_ascii_alphabetic() || ('\u{00C0}'..='\u{024F}').contains(&c) {
            latin += 1;
        }
    }
    let total = arabic + latin;
    match () {
        () if total == 0 => Language::Unknown,
        () if latin * 5 < total => Language::Arabic,
        () if arabic * 5 < total => Language::English,
        () => Language::Mixed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_table() {
        let table = [
            // Diacritics (harakat, tanwin, shadda, sukun) and the superscript alef.
            ("مُحَامٍ", "محام"),
            ("ذَهَبٌ", "ذهب"),
            ("رَحْمٰن", "رحمن"),
            // Alef and hamza forms.
            ("إسلام", "اسلام"),
            ("أحمد", "احمد"),
            ("آمنة", "امنه"),
            ("ٱلله", "الله"),
            ("مؤتمر", "موتمر"),
            ("مسائل", "مسايل"),
            // Alef maqsura and ya, ta marbuta and ha.
            ("مستشفى", "مستشفي"),
            // Persian keyboard forms.
            ("یک", "يك"),
            ("سبيكة", "سبيكه"),
            // Tatweel.
            ("جمـــيل", "جميل"),
            // Eastern Arabic and Persian digits.
            ("١٠ جرام", "10 جرام"),
            ("۱۲۳", "123"),
            ("عيار ٢٤", "عيار 24"),
            // Presentation forms (NFKC): the lam-alef ligature and isolated letters.
            ("\u{FEFB}", "لا"),
            ("\u{FE8D}\u{FEDF}", "ال"),
            // Direction and zero-width marks.
            ("\u{200F}مرحبا\u{200E}", "مرحبا"),
            ("\u{2067}ذهب\u{2069} gold", "ذهب gold"),
            ("\u{061C}سعر\u{200C}", "سعر"),
            ("\u{FEFF}hello", "hello"),
            // Mixed text: Latin lower-cased, Arabic unified, digits ASCII.
            ("Gold ذهبٌ ٢٤K", "gold ذهب 24k"),
            // Full-width Latin (NFKC).
            ("ＧＯＬＤ", "gold"),
        ];
        for (input, want) in table {
            assert_eq!(normalize(input), want, "normalize({input:?})");
        }
    }

    #[test]
    fn terms_take_prefixes_off_arabic_words() {
        let table = [
            ("الذهب", vec!["ذهب"]),
            ("والذهب", vec!["ذهب"]),
            ("بالذهب", vec!["ذهب"]),
            ("وذهب", vec!["ذهب"]),
            ("للعميل", vec!["عميل"]),
            ("فالسعر", vec!["سعر"]),
            // Attached pronouns, with a prefix or without.
            ("فرعكم", vec!["فرع"]),
            ("وذهبها", vec!["ذهب"]),
            ("منتجاتنا", vec!["منتجات"]),
            ("لكم", vec!["لكم"]),
            // Roots keep their first letter: the rest would be too short.
            ("وعد", vec!["وعد"]),
            ("بيع", vec!["بيع"]),
            ("الم", vec!["الم"]),
            // Mixed sentence, punctuation and digits.
            (
                "ما سعرُ الذهبِ اليوم؟ Gold price, ٢٤ قيراط!",
                vec!["ما", "سعر", "ذهب", "يوم", "gold", "price", "24", "قيراط"],
            ),
            // Latin words are never stemmed.
            ("Alpha bravo", vec!["alpha", "bravo"]),
        ];
        for (input, want) in table {
            assert_eq!(terms(input), want, "terms({input:?})");
        }
        // A query and a document spelled differently meet.
        assert_eq!(terms("بِالذَّهَبِ"), terms("الذهب"));
    }

    #[test]
    fn language_is_detected_by_letters() {
        let table = [
            ("كم سعر سبيكة الذهب اليوم؟", Language::Arabic),
            ("ابغى اعرف عن الضمان", Language::Arabic),
            ("What is the price of gold today?", Language::English),
            ("أريد gold bar بوزن ١٠٠ غرام", Language::Mixed),
            ("سعر الذهب 24K", Language::Arabic),
            ("١٢٣ 456 !?", Language::Unknown),
            ("", Language::Unknown),
        ];
        for (input, want) in table {
            assert_eq!(detect(input), want, "detect({input:?})");
        }
    }

    #[test]
    fn contains_matches_across_forms() {
        assert!(contains("أريد التحدث مع مُحامي الشركة", "محامي"));
        assert!(contains("I need a LAWYER now", "lawyer"));
        assert!(contains("\u{200F}ضمان الذهب", "ضمان"));
        assert!(!contains("مرحبا", "محامي"));
        assert!(!contains("anything", ""));
    }
}
