//! The channels contacts write in on: WhatsApp Cloud API, SMS (Twilio-compatible), email.
//!
//! Code map (filled in as the channels arrive; see `shared/design/protocols.md`):
//! - `whatsapp`: webhook signature check over raw bytes, notification parsing (every entry,
//!   change, message and status), sending through the Graph API, error-code mapping.
//! - `sms`: Twilio signature check, form parsing, sending, status callbacks.
//! - `email`: raw MIME in, SMTP out with our own `Message-ID` threading.
//!
//! Architecture invariant: `channels` depends on `runtime` only; it never depends on `agents`.
//!
//! Nothing is implemented yet: this crate is the empty room the conversation-runtime issue moves into.
