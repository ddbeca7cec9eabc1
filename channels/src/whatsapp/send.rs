//! Sending through the Graph API: `POST {graph}/{phone_number_id}/messages` with the number's
//! access token, and what each answer means for the outbox.
//!
//! The Graph API has no idempotency key, so a send that timed out is ambiguous; the outbox treats
//! it as retryable (at least once) and records the provider id of the first answer it sees.

use std::time::Duration;

use serde_json::{Value, json};

/// The longest text body WhatsApp accepts, in characters.
pub const MAX_TEXT_CHARS: usize = 4096;

/// What to do after a failed send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Try again later (rate limits 130429 and 131056, 131000, 5xx, timeouts, connection errors).
    #[error("retryable send failure (code {code:?}): {message}")]
    Retryable {
        code: Option<i64>,
        message: String,
        retry_after: Option<Duration>,
    },
    /// 131047: the 24-hour customer-service window is closed; only a template may be sent.
    #[error("the 24-hour window is closed (131047): {message}")]
    WindowClosed { message: String },
    /// Any other 4xx (131026 undeliverable, 131048 spam limit, 131049 marketing limit, bad
    /// token…): retrying will not help.
    #[error("permanent send failure (code {code:?}): {message}")]
    Permanent { code: Option<i64>, message: String },
}

/// A client for one Graph API base URL (`WHATSAPP_GRAPH_URL`).
#[derive(Clone, Debug)]
pub struct GraphClient {
    http: reqwest::Client,
    base_url: String,
}

impl GraphClient {
    pub fn new(http: reqwest::Client, base_url: &str) -> Self {
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
        }
    }

    /// Sends a prepared message body (see [`text_message`]); returns the provider's message id.
    pub async fn send(
        &self,
        phone_number_id: &str,
        access_token: &str,
        message: &Value,
    ) -> Result<String, SendError> {
        let url = format!("{}/{phone_number_id}/messages", self.base_url);
        let response = self
            .http
            .post(url)
            .bearer_auth(access_token)
            .json(message)
            .send()
            .await
            .map_err(|e| SendError::Retryable {
                code: None,
                message: format!("transport: {e}"),
                retry_after: None,
            })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return body
                .pointer("/messages/0/id")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| SendError::Retryable {
                    code: None,
                    message: format!("a {status} answer without messages[0].id"),
                    retry_after: None,
                });
        }
        Err(classify(status.as_u16(), &body, retry_after))
    }
}

/// Maps a failed answer to what the outbox should do. Branches on the error `code`, never on its
/// title or message.
pub fn classify(status: u16, body: &Value, retry_after: Option<Duration>) -> SendError {
    let code = body.pointer("/error/code").and_then(Value::as_i64);
    let message = body
        .pointer("/error/message")
        .and_then(Value::as_str)
        .map_or_else(|| format!("HTTP {status}"), str::to_owned);
    match code {
        Some(131_047) => SendError::WindowClosed { message },
        Some(130_429 | 131_056 | 131_000 | 4 | 80_007) => SendError::Retryable {
            code,
            message,
            retry_after,
        },
        _ if status >= 500 || status == 429 => SendError::Retryable {
            code,
            message,
            retry_after,
        },
        _ => SendError::Permanent { code, message },
    }
}

/// The Graph API body of a plain text message to `to` (a phone number's digits or a BSUID).
pub fn text_message(
    to: &str,
    body: &str,
    reply_to: Option<&str>,
    callback_data: Option<&str>,
) -> Value {
    let mut message = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "text",
        "text": {"preview_url": false, "body": body},
    });
    if let Some(id) = reply_to {
        message["context"] = json!({ "message_id": id });
    }
    if let Some(data) = callback_data {
        message["biz_opaque_callback_data"] = json!(data);
    }
    message
}

/// The Graph API body of an approved template `name` in `language` (e.g. `ar`), its body's
/// `{{1}}`, `{{2}}`… filled with `parameters` in order.
pub fn template_message(
    to: &str,
    name: &str,
    language: &str,
    parameters: &[&str],
    callback_data: Option<&str>,
) -> Value {
    let mut template = json!({"name": name, "language": {"code": language}});
    if !parameters.is_empty() {
        let values: Vec<Value> = parameters
            .iter()
            .map(|p| json!({"type": "text", "text": p}))
            .collect();
        template["components"] = json!([{"type": "body", "parameters": values}]);
    }
    let mut message = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "template",
        "template": template,
    });
    if let Some(data) = callback_data {
        message["biz_opaque_callback_data"] = json!(data);
    }
    message
}

/// Splits `text` into parts of at most `max` characters, preferring to break after a paragraph,
/// then a line, then a sentence, then a word, and never inside a character.
pub fn split_text(text: &str, max: usize) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while rest.chars().count() > max {
        // Byte index of the char boundary just past `max` characters.
        let limit = rest.char_indices().nth(max).map_or(rest.len(), |(i, _)| i);
        let window = &rest[..limit];
        let cut = ["\n\n", "\n", ". ", "؟ ", "? ", "! ", "، ", ", ", " "]
            .iter()
            .filter_map(|sep| window.rfind(sep).map(|i| i + sep.len()))
            .find(|&i| i > limit / 2)
            .unwrap_or(limit);
        parts.push(rest[..cut].trim_end().to_owned());
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() {
        parts.push(rest.to_owned());
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_map_to_outbox_decisions() {
        let err =
            |code: i64| json!({"error": {"message": "m", "type": "OAuthException", "code": code}});
        assert!(matches!(
            classify(400, &err(130_429), None),
            SendError::Retryable {
                code: Some(130_429),
                ..
            }
        ));
        assert!(matches!(
            classify(400, &err(131_000), None),
            SendError::Retryable { .. }
        ));
        assert!(matches!(
            classify(400, &err(131_047), None),
            SendError::WindowClosed { .. }
        ));
        assert!(matches!(
            classify(400, &err(131_026), None),
            SendError::Permanent { .. }
        ));
        assert!(matches!(
            classify(400, &err(131_048), None),
            SendError::Permanent { .. }
        ));
        assert!(matches!(
            classify(503, &Value::Null, None),
            SendError::Retryable { code: None, .. }
        ));
        assert!(matches!(
            classify(401, &err(190), None),
            SendError::Permanent { .. }
        ));
    }

    #[test]
    fn a_template_fills_its_body_parameters_in_order() {
        let m = template_message(
            "966500000001",
            "follow_up_ar",
            "ar",
            &["ريم", "طقم عيار ٢١"],
            Some("k"),
        );
        assert_eq!(
            m,
            json!({"messaging_product": "whatsapp", "recipient_type": "individual",
                   "to": "966500000001", "type": "template",
                   "template": {"name": "follow_up_ar", "language": {"code": "ar"},
                                "components": [{"type": "body", "parameters": [
                                    {"type": "text", "text": "ريم"},
                                    {"type": "text", "text": "طقم عيار ٢١"}]}]},
                   "biz_opaque_callback_data": "k"})
        );
        let bare = template_message("966500000001", "hello_world", "en_US", &[], None);
        assert!(bare["template"].get("components").is_none());
    }

    #[test]
    fn long_arabic_text_splits_on_boundaries_within_the_limit() {
        let sentence = "الذهب عيار ٢٤ متوفر بأسعار اليوم. ";
        let text = sentence.repeat(400);
        let parts = split_text(&text, MAX_TEXT_CHARS);
        assert!(parts.len() >= 3);
        assert!(parts.iter().all(|p| p.chars().count() <= MAX_TEXT_CHARS));
        assert!(
            parts.iter().all(|p| p.ends_with('.')),
            "each part ends at a sentence"
        );
        let rejoined: String = parts.join(" ");
        assert_eq!(
            rejoined.split_whitespace().collect::<Vec<_>>(),
            text.split_whitespace().collect::<Vec<_>>()
        );
    }

    #[test]
    fn short_text_is_one_part_and_an_unbroken_run_is_cut_at_the_limit() {
        assert_eq!(
            split_text("مرحبا", MAX_TEXT_CHARS),
            vec!["مرحبا".to_owned()]
        );
        let run = "ب".repeat(10);
        assert_eq!(split_text(&run, 4), vec!["بببب", "بببب", "بب"]);
    }

    #[test]
    fn text_message_matches_the_graph_format() {
        let m = text_message("966500000001", "أهلاً", Some("wamid.IN"), Some("key-1"));
        assert_eq!(m["messaging_product"], "whatsapp");
        assert_eq!(m["type"], "text");
        assert_eq!(m["text"]["body"], "أهلاً");
        assert_eq!(m["text"]["preview_url"], false);
        assert_eq!(m["context"]["message_id"], "wamid.IN");
        assert_eq!(m["biz_opaque_callback_data"], "key-1");
    }
}
