//! WhatsApp Cloud API (Meta): webhook signatures, the verification handshake, and notification
//! parsing. Facts are from `shared/design/protocols.md`.

mod notification;
mod send;
mod sender;
mod signature;

pub use notification::{ParseError, parse_notification};
pub use send::{GraphClient, MAX_TEXT_CHARS, SendError, classify, split_text, text_message};
pub use sender::WhatsAppSender;
pub use signature::{SignatureError, sign, verify_meta_signature};

/// Answers Meta's subscription handshake: `Some(challenge)` when `hub.mode` is `subscribe` and the
/// verify token matches (compared in constant time), else `None` (answer 403).
pub fn verify_subscription<'a>(
    mode: Option<&str>,
    token: Option<&str>,
    challenge: Option<&'a str>,
    expected_token: &str,
) -> Option<&'a str> {
    let token_ok =
        token.is_some_and(|t| signature::constant_time_eq(t.as_bytes(), expected_token.as_bytes()));
    (mode == Some("subscribe") && token_ok && !expected_token.is_empty())
        .then_some(challenge)
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_needs_subscribe_and_the_right_token() {
        assert_eq!(
            verify_subscription(Some("subscribe"), Some("tok"), Some("123"), "tok"),
            Some("123")
        );
        assert_eq!(
            verify_subscription(Some("subscribe"), Some("bad"), Some("123"), "tok"),
            None
        );
        assert_eq!(
            verify_subscription(Some("unsubscribe"), Some("tok"), Some("123"), "tok"),
            None
        );
        assert_eq!(
            verify_subscription(Some("subscribe"), None, Some("123"), "tok"),
            None
        );
        assert_eq!(
            verify_subscription(Some("subscribe"), Some(""), Some("123"), ""),
            None
        );
    }
}
