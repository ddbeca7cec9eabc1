//! Knowledge articles: Markdown files with `+++` TOML front matter (`title`, `language`, `tags`,
//! optional `sector`), global under `knowledge-base/articles/` or per tenant. A file's version is
//! the SHA-256 of its bytes, so ingestion skips what has not changed.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The front matter of an article.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArticleMeta {
    pub title: String,
    /// A language code: `ar`, `en`, … (two or three lower-case letters, optionally `-` region).
    pub language: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub sector: Option<String>,
}

/// An article read from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Article {
    pub path: PathBuf,
    pub meta: ArticleMeta,
    /// The Markdown after the front matter.
    pub body: String,
    /// SHA-256 of the file's bytes, hex.
    pub hash: String,
}

/// A problem with an article file, located for the person who edits it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {message}", path.display())]
pub struct ArticleError {
    pub path: PathBuf,
    pub line: usize,
    pub message: String,
}

/// Titles, tags and sectors longer than this are refused.
const MAX_FIELD_CHARS: usize = 200;

fn language_code(code: &str) -> bool {
    let (lang, region) = code.split_once('-').unwrap_or((code, ""));
    (2..=3).contains(&lang.len())
        && lang.chars().all(|c| c.is_ascii_lowercase())
        && (region.is_empty()
            || ((2..=4).contains(&region.len())
                && region.chars().all(|c| c.is_ascii_alphanumeric())))
}

/// The front matter's rules, wherever an article comes from: the offending key and why.
fn check_fields(meta: &ArticleMeta) -> Result<(), (&'static str, String)> {
    if meta.title.trim().is_empty() {
        return Err(("title", "the title is empty".into()));
    }
    if !language_code(&meta.language) {
        return Err((
            "language",
            format!(
                "language {:?} is not a language code such as \"ar\" or \"en\"",
                meta.language
            ),
        ));
    }
    let fields = std::iter::once(("title", &meta.title))
        .chain(meta.tags.iter().map(|t| ("tags", t)))
        .chain(meta.sector.iter().map(|s| ("sector", s)));
    for (key, value) in fields {
        if value.chars().count() > MAX_FIELD_CHARS {
            return Err((
                key,
                format!("{key} is longer than {MAX_FIELD_CHARS} characters"),
            ));
        }
    }
    if meta.tags.iter().any(|t| t.trim().is_empty()) {
        return Err(("tags", "a tag is empty".into()));
    }
    if meta.sector.as_ref().is_some_and(|s| s.trim().is_empty()) {
        return Err(("sector", "the sector is empty".into()));
    }
    Ok(())
}

/// Checks an article's fields (as the API receives them): a message naming the field.
pub fn check_meta(meta: &ArticleMeta) -> Result<(), String> {
    check_fields(meta).map_err(|(key, message)| format!("{key}: {message}"))
}

impl Article {
    /// Reads and checks the article at `path`.
    pub fn load(path: &Path) -> Result<Self, ArticleError> {
        let bytes = std::fs::read(path).map_err(|e| ArticleError {
            path: path.to_owned(),
            line: 1,
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(path, &bytes)
    }

    /// Checks article file contents; `path` is used in messages.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, ArticleError> {
        let err = |line: usize, message: String| ArticleError {
            path: path.to_owned(),
            line,
            message,
        };
        let split = runtime::front_matter::split(bytes, "an article")
            .map_err(|(line, message)| err(line, message))?;
        let meta: ArticleMeta = toml::from_str(&split.front).map_err(|e| {
            let line = e.span().map_or(2, |s| split.line_at(s.start));
            err(line, format!("front matter: {}", e.message()))
        })?;
        if let Err((key, message)) = check_fields(&meta) {
            return Err(err(split.line_of(key), message));
        }
        if split.body.trim().is_empty() {
            return Err(err(split.body_line, "the article has no text".into()));
        }
        Ok(Self {
            path: path.to_owned(),
            meta,
            body: split.body,
            hash: hex::encode(Sha256::digest(bytes)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Article, ArticleError> {
        Article::parse(Path::new("articles/guarantee.md"), text.as_bytes())
    }

    #[test]
    fn a_valid_article_parses_with_its_hash() {
        let text = "+++\ntitle = \"ضمان الذهب\"\nlanguage = \"ar\"\ntags = [\"ضمان\", \"guarantee\"]\nsector = \"gold\"\n+++\n# الضمان\n\nكل سبيكة مضمونة.\n";
        let a = parse(text).unwrap();
        assert_eq!(a.meta.title, "ضمان الذهب");
        assert_eq!(a.meta.tags, ["ضمان", "guarantee"]);
        assert_eq!(a.meta.sector.as_deref(), Some("gold"));
        assert!(a.body.starts_with("# الضمان"));
        assert_eq!(a.hash, hex::encode(Sha256::digest(text.as_bytes())));
        // One byte more is another version.
        assert_ne!(parse(&format!("{text} ")).unwrap().hash, a.hash);
    }

    #[test]
    fn bad_articles_are_refused_with_file_and_line() {
        let cases = [
            ("no front matter", 1, "starts with a `+++` line"),
            ("+++\ntitle = \"x\"\n", 1, "not closed"),
            (
                "+++\ntitle = \"x\"\n+++\nbody",
                2,
                "missing field `language`",
            ),
            (
                "+++\ntitle = \"x\"\nlanguage = \"Arabic\"\n+++\nbody",
                3,
                "not a language code",
            ),
            (
                "+++\ntitle = \"x\"\nlanguage = \"ar\"\ncolour = \"red\"\n+++\nbody",
                4,
                "unknown field",
            ),
            (
                "+++\ntitle = \" \"\nlanguage = \"ar\"\n+++\nbody",
                2,
                "title is empty",
            ),
            (
                "+++\ntitle = \"x\"\nlanguage = \"en\"\ntags = [\"\"]\n+++\nbody",
                4,
                "a tag is empty",
            ),
            (
                "+++\ntitle = \"x\"\nlanguage = \"en\"\n+++\n\n  \n",
                5,
                "no text",
            ),
        ];
        for (text, line, message) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.message.contains(message), "{text:?}: {e}");
            assert!(e.to_string().starts_with("articles/guarantee.md:"), "{e}");
        }
        assert!(language_code("en-GB") && language_code("ar") && !language_code("e"));
    }
}
