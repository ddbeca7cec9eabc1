//! Arabic-aware text normalisation for matching (search, keywords): the same word written with or
//! without diacritics, with any alef form, with ى or ي, with ة or ه, stretched with tatweel, or
//! with Eastern Arabic digits, normalises to one form. Latin text is lower-cased.
//!
//! For matching only: what contacts see is never normalised.

/// Normalises `text` for matching.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            // Harakat, tanwin, shadda, sukun, superscript alef, Quranic marks: dropped.
            '\u{064B}'..='\u{065F}' | '\u{0670}' | '\u{06D6}'..='\u{06ED}' => {}
            // Tatweel (kashida) only stretches a word.
            '\u{0640}' => {}
            'أ' | 'إ' | 'آ' | 'ٱ' => out.push('ا'),
            'ى' => out.push('ي'),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelling_variants_meet() {
        assert_eq!(normalize("مُحَامٍ"), normalize("محام"));
        assert_eq!(normalize("إسلام"), normalize("اسلام"));
        assert_eq!(normalize("آمنة"), "امنه");
        assert_eq!(normalize("مستشفى"), normalize("مستشفي"));
        assert_eq!(normalize("جمـــيل"), "جميل");
        assert_eq!(normalize("١٠ جرام"), "10 جرام");
        assert_eq!(normalize("۱۲"), "12");
        assert_eq!(normalize("Lawyer"), "lawyer");
    }

    #[test]
    fn contains_matches_across_forms() {
        assert!(contains("أريد التحدث مع مُحامي الشركة", "محامي"));
        assert!(contains("I need a LAWYER now", "lawyer"));
        assert!(!contains("مرحبا", "محامي"));
        assert!(!contains("anything", ""));
    }
}
