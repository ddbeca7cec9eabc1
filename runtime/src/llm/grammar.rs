//! Constrained decoding of tool calls: JSON that matches a tool's parameter schema, whatever the
//! model would rather say.
//!
//! The structure (braces, keys, commas, quotes) is forced: it is fed to the model as if the model
//! had written it. The model chooses only the values, and only among tokens the schema allows at
//! that point: a tool name from the offered tools, an enum member, digits for a number, any
//! printable text for a string. The model's preference decides among the allowed tokens, so a
//! small model still fills in plausible values, and the result always parses and validates.
//!
//! Supported schema subset (what agents' tools use): objects with `properties` (the `required`
//! ones are written, in schema order; optional ones are left out), `string` (with `enum`,
//! `minLength` and `maxLength`), `integer`, `number`, `boolean`, arrays (one item), and `enum`
//! of strings. Anything else is treated as a string.

use serde_json::Value;

use super::ToolSpec;

/// The model side of constrained decoding.
pub trait Decoder {
    /// Feeds `text` to the model as the next part of its own output.
    fn force(&mut self, text: &str) -> Result<(), String>;
    /// Feeds the model's most likely next token whose text `accept` approves, and returns that
    /// text; `None` when no token is acceptable.
    fn pick(&mut self, accept: &dyn Fn(&str) -> bool) -> Result<Option<String>, String>;
}

/// Longest string value written before the string is closed by force.
pub const MAX_STRING_CHARS: usize = 160;
/// Longest number written before it is ended by force.
pub const MAX_NUMBER_CHARS: usize = 12;

/// Writes `{"name": …, "arguments": {…}}` for one of `tools` and returns (name, arguments JSON).
pub fn tool_call(tools: &[ToolSpec], d: &mut dyn Decoder) -> Result<(String, String), String> {
    if tools.is_empty() {
        return Err("no tools to call".into());
    }
    let mut w = Writer {
        d,
        out: String::new(),
    };
    w.force("{\"name\": \"")?;
    // Options are written as JSON string contents: a quote or backslash in one stays valid.
    let names: Vec<String> = tools.iter().map(|t| escaped(&t.name)).collect();
    let (chosen, used) = w.choose(&names, "\", \"arguments\": ")?;
    w.force(&"\", \"arguments\": "[used..])?;
    let tool = tools
        .iter()
        .find(|t| escaped(&t.name) == chosen)
        .ok_or_else(|| format!("chose an unknown tool {chosen:?}"))?;
    let start = w.out.len();
    let used = w.value(&tool.parameters, "}")?;
    let arguments = w.out[start..].to_owned();
    w.force(&"}"[used..])?;
    Ok((tool.name.clone(), arguments))
}

/// `s` as it appears between the quotes of a JSON string.
fn escaped(s: &str) -> String {
    let quoted = Value::String(s.to_owned()).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

struct Writer<'a> {
    d: &'a mut dyn Decoder,
    out: String,
}

impl Writer<'_> {
    fn force(&mut self, text: &str) -> Result<(), String> {
        if !text.is_empty() {
            self.d.force(text)?;
            self.out.push_str(text);
        }
        Ok(())
    }

    fn pick(&mut self, accept: &dyn Fn(&str) -> bool) -> Result<Option<String>, String> {
        let picked = self.d.pick(accept)?;
        if let Some(t) = &picked {
            self.out.push_str(t);
        }
        Ok(picked)
    }

    /// Writes a value for `schema`. `follow` is the literal the caller writes next; a token may
    /// end the value and start `follow`: the returned count is how many bytes of `follow` were
    /// written already.
    fn value(&mut self, schema: &Value, follow: &str) -> Result<usize, String> {
        if let Some(options) = schema.get("enum").and_then(Value::as_array) {
            let strings: Vec<String> = options
                .iter()
                .filter_map(|o| o.as_str().map(escaped))
                .collect();
            if !strings.is_empty() {
                self.force("\"")?;
                let after = format!("\"{follow}");
                let (_, used) = self.choose(&strings, &after)?;
                return self.close_quote(used);
            }
        }
        match schema
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("string")
        {
            "object" => {
                self.force("{")?;
                let props = schema.get("properties").and_then(Value::as_object);
                let required: Vec<&str> = schema
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let keys: Vec<(&String, &Value)> = props
                    .map(|p| {
                        p.iter()
                            .filter(|(k, _)| required.contains(&k.as_str()))
                            .collect()
                    })
                    .unwrap_or_default();
                for (i, (key, prop)) in keys.iter().enumerate() {
                    // The separator before this key was written after the previous value.
                    self.force(&format!("{}: ", Value::String((*key).clone())))?;
                    let next = if i + 1 == keys.len() { "}" } else { ", " };
                    let used = self.value(prop, next)?;
                    self.force(&next[used..])?;
                }
                if keys.is_empty() {
                    self.force("}")?;
                }
                // The closing brace is written: nothing of `follow` yet.
                Ok(0)
            }
            "array" => {
                self.force("[")?;
                let items = schema.get("items").cloned().unwrap_or(Value::Null);
                let used = self.value(&items, "]")?;
                self.force(&"]"[used..])?;
                Ok(0)
            }
            "boolean" => {
                let (_, used) = self.choose(&["true".into(), "false".into()], follow)?;
                Ok(used)
            }
            kind @ ("integer" | "number") => self.number(kind == "number", follow),
            _ => self.string(schema, follow),
        }
    }

    /// The model picks one of `options` token by token; once only one option fits what it wrote,
    /// the rest is forced. Returns the option and how many bytes of `follow` were written.
    fn choose(&mut self, options: &[String], follow: &str) -> Result<(String, usize), String> {
        let mut typed = String::new();
        loop {
            let alive: Vec<&String> = options.iter().filter(|o| o.starts_with(&typed)).collect();
            match alive.as_slice() {
                [] => return Err(format!("no option starts with {typed:?}")),
                [only] => {
                    let rest = only[typed.len()..].to_owned();
                    self.force(&rest)?;
                    return Ok(((*only).clone(), 0));
                }
                _ => {}
            }
            let complete = alive.iter().any(|o| **o == typed);
            let accept = |t: &str| {
                let candidate = format!("{typed}{t}");
                alive
                    .iter()
                    .any(|o| o.starts_with(&candidate) && !t.is_empty())
                    || (complete
                        && options.contains(&typed)
                        && !t.is_empty()
                        && follow.starts_with(t))
            };
            let Some(token) = self.pick(&accept)? else {
                // Nothing the model likes fits: take the first live option.
                let rest = alive[0][typed.len()..].to_owned();
                self.force(&rest)?;
                return Ok((alive[0].clone(), 0));
            };
            let candidate = format!("{typed}{token}");
            if alive.iter().any(|o| o.starts_with(&candidate)) {
                typed = candidate;
            } else {
                // The token ended the option and began `follow`.
                return Ok((typed, token.len()));
            }
        }
    }

    /// After a string option: `used` bytes of `"` + follow were written by the model's last
    /// token. Returns how much of follow was written.
    fn close_quote(&mut self, used: usize) -> Result<usize, String> {
        if used == 0 {
            self.force("\"")?;
            Ok(0)
        } else {
            Ok(used - 1)
        }
    }

    fn string(&mut self, schema: &Value, follow: &str) -> Result<usize, String> {
        let min = schema
            .get("minLength")
            .and_then(Value::as_u64)
            .map_or(1, |m| usize::try_from(m).unwrap_or(usize::MAX));
        let max = schema
            .get("maxLength")
            .and_then(Value::as_u64)
            .map_or(MAX_STRING_CHARS, |m| {
                usize::try_from(m)
                    .unwrap_or(usize::MAX)
                    .min(MAX_STRING_CHARS)
            })
            .max(min);
        self.force("\"")?;
        let closing = format!("\"{follow}");
        let mut chars = 0usize;
        loop {
            if chars >= max {
                self.force("\"")?;
                return Ok(0);
            }
            let room = max - chars;
            let may_end = chars >= min;
            let accept = |t: &str| {
                if t.is_empty() {
                    return false;
                }
                if may_end && t.starts_with('"') && closing.starts_with(t) {
                    return true;
                }
                t.chars().count() <= room
                    && t.chars().all(|c| !c.is_control() && c != '"' && c != '\\')
                    && t != "\u{FFFD}"
                    && !t.contains('\u{FFFD}')
                    && (chars > 0 || !t.starts_with(' '))
            };
            let Some(token) = self.pick(&accept)? else {
                if chars < min {
                    // Nothing printable fits: write a placeholder rather than an invalid value.
                    let pad = "-".repeat(min - chars);
                    self.force(&pad)?;
                }
                self.force("\"")?;
                return Ok(0);
            };
            if token.starts_with('"') {
                return Ok(token.len() - 1);
            }
            chars += token.chars().count();
        }
    }

    fn number(&mut self, fractional: bool, follow: &str) -> Result<usize, String> {
        let mut typed = String::new();
        loop {
            let digits = typed.chars().filter(char::is_ascii_digit).count();
            if typed.len() >= MAX_NUMBER_CHARS {
                if digits == 0 || typed.ends_with('.') {
                    self.force("0")?;
                }
                return Ok(0);
            }
            let ends_in_digit = typed.ends_with(|c: char| c.is_ascii_digit());
            let accept = |t: &str| {
                if t.is_empty() {
                    return false;
                }
                if ends_in_digit && follow.starts_with(t) {
                    return true;
                }
                let mut state = typed.clone();
                for c in t.chars() {
                    let ok = match c {
                        '-' => state.is_empty(),
                        '.' => {
                            fractional
                                && !state.contains('.')
                                && state.ends_with(|c: char| c.is_ascii_digit())
                        }
                        '0'..='9' => !(state == "0" || state == "-0"),
                        _ => false,
                    };
                    if !ok {
                        return false;
                    }
                    state.push(c);
                }
                state.len() <= MAX_NUMBER_CHARS
            };
            let Some(token) = self.pick(&accept)? else {
                if !ends_in_digit {
                    self.force("0")?;
                }
                return Ok(0);
            };
            if ends_in_digit && follow.starts_with(token.as_str()) {
                return Ok(token.len());
            }
            typed.push_str(&token);
        }
    }
}

/// Checks `value` against the supported schema subset: what [`tool_call`] guarantees, and what
/// tool arguments from any model are checked with before use.
pub fn validate(schema: &Value, value: &Value) -> Result<(), String> {
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        return if options.contains(value) {
            Ok(())
        } else {
            Err(format!(
                "{value} is not one of {}",
                Value::Array(options.clone())
            ))
        };
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            let obj = value
                .as_object()
                .ok_or_else(|| format!("{value} is not an object"))?;
            let props = schema.get("properties").and_then(Value::as_object);
            for key in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !obj.contains_key(key) {
                    return Err(format!("missing required field {key:?}"));
                }
            }
            for (key, v) in obj {
                match props.and_then(|p| p.get(key)) {
                    Some(s) => validate(s, v).map_err(|e| format!("{key}: {e}"))?,
                    None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                        return Err(format!("unknown field {key:?}"));
                    }
                    None => {}
                }
            }
            Ok(())
        }
        Some("string") => {
            let s = value
                .as_str()
                .ok_or_else(|| format!("{value} is not a string"))?;
            let len = s.chars().count() as u64;
            if let Some(min) = schema
                .get("minLength")
                .and_then(Value::as_u64)
                .filter(|m| len < *m)
            {
                return Err(format!("shorter than {min} characters"));
            }
            if let Some(max) = schema
                .get("maxLength")
                .and_then(Value::as_u64)
                .filter(|m| len > *m)
            {
                return Err(format!("longer than {max} characters"));
            }
            Ok(())
        }
        Some("integer") if value.is_i64() || value.is_u64() => Ok(()),
        Some("integer") => Err(format!("{value} is not an integer")),
        Some("number") if value.is_number() => Ok(()),
        Some("number") => Err(format!("{value} is not a number")),
        Some("boolean") if value.is_boolean() => Ok(()),
        Some("boolean") => Err(format!("{value} is not a boolean")),
        Some("array") => {
            let items = value
                .as_array()
                .ok_or_else(|| format!("{value} is not an array"))?;
            match schema.get("items") {
                Some(s) => items.iter().try_for_each(|i| validate(s, i)),
                None => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A model over a tiny vocabulary that prefers tokens in a fixed, adversarial order: it
    /// would rather write quotes, braces and prose than anything valid.
    struct Scripted {
        vocab: Vec<&'static str>,
        fed: String,
        picks: usize,
    }

    impl Decoder for Scripted {
        fn force(&mut self, text: &str) -> Result<(), String> {
            self.fed.push_str(text);
            Ok(())
        }
        fn pick(&mut self, accept: &dyn Fn(&str) -> bool) -> Result<Option<String>, String> {
            self.picks += 1;
            // Rotate preferences so the choices vary from step to step.
            let n = self.vocab.len();
            let start = self.picks % n;
            for i in 0..n {
                let t = self.vocab[(start + i) % n];
                if accept(t) {
                    self.fed.push_str(t);
                    return Ok(Some(t.to_owned()));
                }
            }
            Ok(None)
        }
    }

    fn tools() -> Vec<ToolSpec> {
        vec![
            ToolSpec {
                name: "escalate".into(),
                description: "hand to a human".into(),
                parameters: json!({"type": "object", "properties": {"reason": {"type": "string"}}, "required": ["reason"]}),
            },
            ToolSpec {
                name: "book_meeting".into(),
                description: "book".into(),
                parameters: json!({"type": "object", "additionalProperties": false,
                    "properties": {
                        "day": {"type": "string", "enum": ["monday", "mon", "tuesday", "say \"hi\"\\"]},
                        "minutes": {"type": "integer"},
                        "price": {"type": "number"},
                        "confirmed": {"type": "boolean"},
                        "topics": {"type": "array", "items": {"type": "string", "maxLength": 5}},
                        "note": {"type": "string"}},
                    "required": ["day", "minutes", "price", "confirmed", "topics"]}),
            },
        ]
    }

    #[test]
    fn every_tool_call_parses_and_validates_whatever_the_model_prefers() {
        let vocab = vec![
            "\"", "}", "{", "\",", "\"}", "hello", " world", "\\", "\n", "book", "_meeting", "esc",
            "alate", "mon", "day", "tues", "1", "2", "0", "-", ".", "5", ",", " ", "tr", "ue",
            "false", "true", "x", "]", "\"]", "\u{FFFD}", "ذهب", "say", " \\\"", "hi\\\"", "\\\\",
        ];
        let mut days = Vec::new();
        for seed in 0..40 {
            let mut d = Scripted {
                vocab: vocab.clone(),
                fed: String::new(),
                picks: seed,
            };
            let (name, args) = tool_call(&tools(), &mut d).unwrap();
            let whole: Value = serde_json::from_str(&d.fed)
                .unwrap_or_else(|e| panic!("seed {seed}: {e}: {}", d.fed));
            assert_eq!(whole["name"], name.as_str());
            let parsed: Value =
                serde_json::from_str(&args).unwrap_or_else(|e| panic!("seed {seed}: {e}: {args}"));
            assert_eq!(whole["arguments"], parsed, "seed {seed}");
            let tool = tools().into_iter().find(|t| t.name == name).unwrap();
            validate(&tool.parameters, &parsed)
                .unwrap_or_else(|e| panic!("seed {seed}: {e}: {args}"));
            days.push(parsed["day"].clone());
        }
        // An option with a quote and a backslash comes out escaped, and back whole.
        assert!(days.contains(&json!("say \"hi\"\\")), "{days:?}");
    }

    #[test]
    fn validation_reports_what_is_wrong() {
        let schema = &tools()[1].parameters;
        let err = validate(
            schema,
            &json!({"day": "friday", "minutes": 1, "price": 1, "confirmed": true, "topics": []}),
        )
        .unwrap_err();
        assert!(err.contains("day"), "{err}");
        let err = validate(
            schema,
            &json!({"day": "mon", "minutes": 1.5, "price": 1, "confirmed": true, "topics": []}),
        )
        .unwrap_err();
        assert!(err.contains("minutes"), "{err}");
        let err = validate(
            schema,
            &json!({"day": "mon", "minutes": 1, "price": 1, "confirmed": true, "topics": [], "x": 1}),
        )
        .unwrap_err();
        assert!(err.contains("unknown field"), "{err}");
        assert!(validate(&tools()[0].parameters, &json!({})).is_err());
    }
}
