//! Files with TOML front matter between `+++` lines, then a body: prompt files and knowledge
//! articles. Splitting is shared; each kind of file parses and checks its own front matter.

/// A file split at its front matter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The TOML between the `+++` lines; its first line is line 2 of the file.
    pub front: String,
    /// Everything after the closing `+++` line.
    pub body: String,
    /// The file's line number of the body's first line.
    pub body_line: usize,
}

impl Split {
    /// The file's line number of the front-matter line that starts with `key` (line 2 if none
    /// does), for messages about that key.
    pub fn line_of(&self, key: &str) -> usize {
        self.front
            .lines()
            .position(|l| l.trim_start().starts_with(key))
            .map_or(2, |i| i + 2)
    }

    /// The file's line number of a byte offset into [`Split::front`] (a TOML error's span).
    pub fn line_at(&self, offset: usize) -> usize {
        self.front[..offset.min(self.front.len())]
            .matches('\n')
            .count()
            + 2
    }
}

/// Splits `bytes` (UTF-8, an optional BOM) into front matter and body. `what` names the kind of
/// file in messages ("a prompt file"). Errors carry the file's line number.
pub fn split(bytes: &[u8], what: &str) -> Result<Split, (usize, String)> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        (line, "the file is not valid UTF-8".to_owned())
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n');
    if lines.next().map(str::trim_end) != Some("+++") {
        return Err((
            1,
            format!("{what} starts with a `+++` line, then TOML front matter, then `+++`"),
        ));
    }
    let mut front = String::new();
    let mut body_line = None;
    for (i, line) in lines.by_ref().enumerate() {
        if line.trim_end() == "+++" {
            body_line = Some(i + 3);
            break;
        }
        front.push_str(line);
    }
    let Some(body_line) = body_line else {
        return Err((
            1,
            "the front matter is not closed by a `+++` line".to_owned(),
        ));
    };
    Ok(Split {
        front,
        body: lines.collect(),
        body_line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_locates_lines() {
        let s = split(
            "\u{feff}+++\ntitle = \"x\"\ntags = []\n+++\nbody\nmore\n".as_bytes(),
            "a file",
        )
        .unwrap();
        assert_eq!(s.front, "title = \"x\"\ntags = []\n");
        assert_eq!(s.body, "body\nmore\n");
        assert_eq!(s.body_line, 5);
        assert_eq!(s.line_of("tags"), 3);
        assert_eq!(s.line_at(12), 3);
    }

    #[test]
    fn refuses_what_is_not_front_matter() {
        assert_eq!(split(b"no", "an article").unwrap_err().0, 1);
        assert!(
            split(b"+++\nx = 1\n", "an article")
                .unwrap_err()
                .1
                .contains("not closed")
        );
        assert_eq!(
            split(b"+++\n\xff\n+++\n", "an article").unwrap_err(),
            (2, "the file is not valid UTF-8".to_owned())
        );
    }
}
