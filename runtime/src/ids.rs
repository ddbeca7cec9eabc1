//! Identifier newtypes and parsed domain strings.
//!
//! Every id is a UUID underneath, but a `TenantId` can never be passed where a `UserId` is meant.
//! Strings that come from outside (`TenantSlug`, `Email`) are parsed once at the boundary.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh random id.
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// A tenant: one business using Wasit. Every tenant-scoped row carries it.
    TenantId
);
uuid_id!(
    /// A person who logs in: admin, rep, prompt engineer, affiliate.
    UserId
);
uuid_id!(
    /// Someone the tenant talks to: a lead, a customer, an affiliate applicant.
    ContactId
);
uuid_id!(
    /// The one conversation of a contact (across channels).
    ConversationId
);
uuid_id!(
    /// One inbound or outbound message.
    MessageId
);
uuid_id!(
    /// A sales lead: a contact somewhere between first touch and a won or lost deal.
    LeadId
);

uuid_id!(
    /// A deal: an opportunity with a value and a stage, won or lost in the end.
    DealId
);
uuid_id!(
    /// A CRM event a background agent reacts to (`agent_events`).
    EventId
);
uuid_id!(
    /// A tenant's account on a channel: a WhatsApp number, an SMS number, a mailbox.
    ChannelAccountId
);

/// A tenant's short name, used on the command line and at login: 2–63 characters of lowercase
/// ASCII letters, digits and hyphens, starting with a letter.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct TenantSlug(String);

impl TenantSlug {
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok_len = (2..=63).contains(&s.len());
        let ok_start = s.starts_with(|c: char| c.is_ascii_lowercase());
        let ok_chars = s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok_len && ok_start && ok_chars && !s.ends_with('-') {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "invalid tenant slug {s:?}: use 2-63 lowercase letters, digits and hyphens, starting with a letter (e.g. \"acme-gold\")"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TenantSlug {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// An email address, trimmed and lower-cased. Only the shape is checked (one `@`, a dot in the
/// domain, no spaces); deliverability is the mail server's business.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim().to_lowercase();
        let valid = match s.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains('@')
                    && s.len() <= 254
                    && !s.chars().any(char::is_whitespace)
            }
            None => false,
        };
        if valid {
            Ok(Self(s))
        } else {
            Err(format!("invalid email address {s:?}"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Email {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Email::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for TenantSlug {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TenantSlug::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_accepts_lowercase_and_rejects_the_rest() {
        assert!(TenantSlug::parse("acme-gold").is_ok());
        assert!(TenantSlug::parse("a1").is_ok());
        for bad in [
            "",
            "a",
            "Acme",
            "1acme",
            "acme_gold",
            "acme-",
            "وسيط",
            &"a".repeat(64),
        ] {
            assert!(
                TenantSlug::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn email_is_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Rep@Example.COM ").unwrap().as_str(),
            "rep@example.com"
        );
        for bad in ["", "no-at", "a@b", "@x.io", "a b@x.io", "a@.io", "a@x.io."] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
