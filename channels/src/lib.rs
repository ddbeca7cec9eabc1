//! The channels contacts write in on: WhatsApp Cloud API, SMS (Twilio-compatible), email.
//!
//! Code map:
//! - [`whatsapp`]: webhook signature check over raw bytes (`verify_meta_signature`), the
//!   subscription handshake, and notification parsing into `runtime::inbox` batches (every entry,
//!   change, message and status). Sending arrives with the outbox dispatcher.
//! - `sms`, `email`: to come (Twilio signatures and form parsing; raw MIME in, SMTP out).
//!
//! Architecture invariant: `channels` depends on `runtime` only; it never depends on `agents`.
//! Channels parse and format; they never touch the database: the inbox and outbox in `runtime` do.

pub mod whatsapp;
