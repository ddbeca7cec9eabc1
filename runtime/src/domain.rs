//! The core vocabulary every crate shares: the channels, message kinds and delivery statuses, the
//! eighteen agent kinds, and money. Each is parsed once where it enters (a webhook, a row, a
//! prompt file, a model's tool call) and travels typed from there; its stored and wire form is the
//! `snake_case` name [`as_str`](Channel::as_str) gives, so PostgreSQL columns and JSON keep their
//! text.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An error for a name that is not one of a vocabulary's: says which names are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {given:?}: expected one of {expected}")]
pub struct UnknownName {
    pub what: &'static str,
    pub given: String,
    pub expected: String,
}

/// A closed vocabulary stored as text: `as_str`, `ALL`, `FromStr` (an unknown name is an error that
/// lists the known ones), `Display`, serde and sqlx as the name.
macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &[$name] = &[$($name::$variant,)+];

            /// The stored and wire name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value named `name`, if it is one.
            pub fn parse(name: &str) -> Option<Self> {
                match name {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s).ok_or_else(|| UnknownName {
                    what: $what,
                    given: s.to_owned(),
                    expected: Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", "),
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        impl sqlx::Type<sqlx::Postgres> for $name {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::Type<sqlx::Postgres>>::type_info()
            }
            fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
                <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
            }
        }

        impl sqlx::postgres::PgHasArrayType for $name {
            fn array_type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::postgres::PgHasArrayType>::array_type_info()
            }
        }

        impl<'q> sqlx::Encode<'q, sqlx::Postgres> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<'q, sqlx::Postgres>>::encode_by_ref(&self.as_str(), buf)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $name {
            fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                let s = <&str as sqlx::Decode<'r, sqlx::Postgres>>::decode(value)?;
                Ok(s.parse()?)
            }
        }
    };
}

vocabulary!(
    /// The channels contacts write in on.
    Channel, "channel" {
        Whatsapp = "whatsapp",
        Sms = "sms",
        Email = "email",
        /// `wasit chat`: a person at a terminal, talking to the agents as a contact would.
        Chat = "chat",
    }
);

vocabulary!(
    /// What kind of message arrived or was sent. Anything a channel does not know is
    /// `Unsupported`: stored, never dropped.
    MessageKind, "message kind" {
        Text = "text",
        Image = "image",
        Video = "video",
        Audio = "audio",
        Document = "document",
        Sticker = "sticker",
        Location = "location",
        Contacts = "contacts",
        Reaction = "reaction",
        /// A reply button or list choice.
        Interactive = "interactive",
        /// A template's quick-reply button.
        Button = "button",
        /// A WhatsApp Flow's reply.
        FlowReply = "flow_reply",
        Email = "email",
        /// An approved WhatsApp template we sent.
        Template = "template",
        /// A CRM event a background agent's turn answers (never stored as a message).
        Event = "event",
        Unsupported = "unsupported",
    }
);

vocabulary!(
    /// Where a provider says one of our messages is.
    DeliveryStatus, "delivery status" {
        Sent = "sent",
        Delivered = "delivered",
        Read = "read",
        Failed = "failed",
    }
);

vocabulary!(
    /// The eighteen agent kinds of `shared/design/agents.md`, in its order. What each may do is
    /// the `agents` crate's catalog; its prompt file is `prompts/<name>.md`.
    AgentKind, "agent kind" {
        Intake = "intake",
        Qualifier = "qualifier",
        Scorer = "scorer",
        Router = "router",
        Sales = "sales",
        ObjectionHandler = "objection_handler",
        Knowledge = "knowledge",
        FollowUp = "follow_up",
        MeetingScheduler = "meeting_scheduler",
        ProposalWriter = "proposal_writer",
        DealCoach = "deal_coach",
        Forecaster = "forecaster",
        AffiliateRecruiter = "affiliate_recruiter",
        AffiliateOnboarding = "affiliate_onboarding",
        AffiliateCoach = "affiliate_coach",
        Commission = "commission",
        Guarantee = "guarantee",
        /// Takes a conversation to a person: a handoff to it always runs, and after it no agent
        /// answers until a rep hands the conversation back.
        Escalation = "escalation",
    }
);

/// The agent a new contact meets, as the `conversations` table's default says.
impl Default for AgentKind {
    fn default() -> Self {
        AgentKind::FIRST
    }
}

impl AgentKind {
    /// The agent that hands conversations to people.
    pub const ESCALATION: AgentKind = AgentKind::Escalation;
    /// The agent a new contact meets.
    pub const FIRST: AgentKind = AgentKind::Intake;
}

/// An ISO 4217 currency code: three uppercase ASCII letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    /// Saudi riyal, the default of the starter data.
    pub const SAR: Currency = Currency(*b"SAR");

    /// Parses a code; lowercase is accepted and raised (`sar` → `SAR`).
    pub fn parse(code: &str) -> Result<Self, String> {
        let upper = code.trim().to_ascii_uppercase();
        match <[u8; 3]>::try_from(upper.as_bytes()) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_uppercase) => Ok(Self(bytes)),
            _ => Err(format!(
                "invalid currency {code:?}: use a three-letter ISO 4217 code such as SAR, AED, KWD or USD"
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// Digits after the decimal point (ISO 4217's minor unit): 3 for the dinars of Bahrain, Iraq,
    /// Jordan, Kuwait, Libya and Tunisia and the Omani rial, 0 for currencies without a minor unit
    /// in use, 2 for the rest.
    pub fn exponent(&self) -> u32 {
        match self.as_str() {
            "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
            "JPY" | "KRW" | "VND" | "CLP" | "ISK" | "UGX" | "XAF" | "XOF" => 0,
            _ => 2,
        }
    }

    /// Minor units in one major unit (100 halalas in a riyal).
    pub fn minor_per_major(&self) -> i64 {
        10_i64.pow(self.exponent())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Currency {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The largest amount Wasit handles, in minor units: far above any deal, far below `i64::MAX`, so
/// sums of many amounts cannot overflow.
pub const MAX_MINOR: i64 = 9_000_000_000_000_000;

/// Why a decimal number was refused ([`parse_decimal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecimalError {
    /// Not a plain non-negative decimal number.
    Invalid,
    /// More fraction digits than allowed.
    TooPrecise,
    /// Above [`MAX_MINOR`] units.
    OutOfRange,
}

/// A non-negative decimal number as an integer count of `10^-decimals` units, exactly: `12.5`
/// with 2 decimals is 1250. ASCII, Eastern Arabic (٠–٩) and Persian (۰–۹) digits; `.` or `٫` as
/// the decimal point; `,` or `٬` between thousands. No sign, no exponent, no rounding.
pub fn parse_decimal(text: &str, decimals: u32) -> Result<i64, DecimalError> {
    let mut whole: i64 = 0;
    let mut fraction: i64 = 0;
    let mut fraction_digits = 0u32;
    let mut in_fraction = false;
    let mut digits = 0usize;
    for c in text.trim().chars() {
        let digit = match c {
            '0'..='9' => Some(u32::from(c) - u32::from('0')),
            '\u{0660}'..='\u{0669}' => Some(u32::from(c) - 0x0660),
            '\u{06F0}'..='\u{06F9}' => Some(u32::from(c) - 0x06F0),
            _ => None,
        };
        match (digit, c) {
            (Some(d), _) if in_fraction => {
                fraction_digits += 1;
                if fraction_digits > decimals {
                    return Err(DecimalError::TooPrecise);
                }
                fraction = fraction * 10 + i64::from(d);
                digits += 1;
            }
            (Some(d), _) => {
                whole = whole
                    .checked_mul(10)
                    .and_then(|w| w.checked_add(i64::from(d)))
                    .ok_or(DecimalError::OutOfRange)?;
                digits += 1;
            }
            (None, '.' | '\u{066B}') if !in_fraction => in_fraction = true,
            (None, ',' | '\u{066C}') if !in_fraction => {}
            _ => return Err(DecimalError::Invalid),
        }
    }
    if digits == 0 {
        return Err(DecimalError::Invalid);
    }
    let unit = 10_i64
        .checked_pow(decimals)
        .ok_or(DecimalError::OutOfRange)?;
    whole
        .checked_mul(unit)
        .and_then(|w| w.checked_add(fraction * 10_i64.pow(decimals - fraction_digits)))
        .filter(|n| *n <= MAX_MINOR)
        .ok_or(DecimalError::OutOfRange)
}

/// An amount of money: integer minor units (halalas, fils, cents) in a currency. Never a float:
/// amounts are parsed exactly from their decimal text and added as integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub minor: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Self {
        Self { minor, currency }
    }

    /// Parses a non-negative decimal amount in major units exactly: `1250`, `1250.5`, `1,250.50`,
    /// and the same in Eastern Arabic digits with the Arabic decimal and thousands separators
    /// (`١٬٢٥٠٫٥٠`). More fraction digits than the currency has is an error, never a rounding.
    pub fn parse(amount: &str, currency: Currency) -> Result<Self, String> {
        let minor = parse_decimal(amount, currency.exponent()).map_err(|e| match e {
            DecimalError::TooPrecise => format!(
                "the amount {amount:?} has more decimals than {currency} has ({})",
                currency.exponent()
            ),
            DecimalError::OutOfRange => format!("the amount {amount:?} is out of range"),
            DecimalError::Invalid => format!(
                "invalid amount {amount:?}: write a number of {currency} with at most {} decimals, such as 1250.50",
                currency.exponent()
            ),
        })?;
        Ok(Self { minor, currency })
    }

    /// An amount as a model or a client wrote it in JSON: a number (read through its shortest
    /// decimal form, so `1250.1` is exactly 1250.10) or a string ([`Money::parse`]).
    pub fn from_json(amount: &serde_json::Value, currency: Currency) -> Result<Self, String> {
        match amount {
            serde_json::Value::Number(n) => Self::parse(&n.to_string(), currency),
            serde_json::Value::String(s) => Self::parse(s, currency),
            other => Err(format!(
                "invalid amount {other}: give a number of {currency}"
            )),
        }
    }

    /// The amount in major units as decimal text, with the currency's digits: `1250.50`.
    pub fn major(&self) -> String {
        let exponent = self.currency.exponent();
        let per = self.currency.minor_per_major();
        let sign = if self.minor < 0 { "-" } else { "" };
        let abs = self.minor.unsigned_abs();
        let per = per.unsigned_abs();
        if exponent == 0 {
            format!("{sign}{abs}")
        } else {
            format!(
                "{sign}{}.{:0width$}",
                abs / per,
                abs % per,
                width = exponent as usize
            )
        }
    }

    /// The amount in major units as a JSON number, for what a model or a client reads (never to
    /// decide anything with: decisions use `minor`).
    pub fn major_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.major()).unwrap_or(serde_json::Value::Null)
    }

    /// `percent_bps` of this amount (basis points: 250 = 2.5 %), rounded half up to a minor unit.
    pub fn share_bps(&self, percent_bps: i64) -> Option<Self> {
        let product = i128::from(self.minor) * i128::from(percent_bps);
        let rounded = (product + 5_000).div_euclid(10_000);
        i64::try_from(rounded)
            .ok()
            .map(|minor| Self { minor, ..*self })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.major(), self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn currency(code: &str) -> Currency {
        Currency::parse(code).unwrap()
    }

    #[test]
    fn names_round_trip_and_unknown_names_list_the_known_ones() {
        for kind in AgentKind::ALL {
            assert_eq!(kind.as_str().parse::<AgentKind>().unwrap(), *kind);
        }
        assert_eq!(AgentKind::ALL.len(), 18);
        let err = "salesman".parse::<AgentKind>().unwrap_err().to_string();
        assert!(err.contains("unknown agent kind \"salesman\""), "{err}");
        assert!(err.contains("objection_handler"), "{err}");
        assert_eq!(
            serde_json::to_value(Channel::Whatsapp).unwrap(),
            serde_json::json!("whatsapp")
        );
        assert!(serde_json::from_value::<Channel>(serde_json::json!("fax")).is_err());
        assert_eq!(MessageKind::FlowReply.to_string(), "flow_reply");
    }

    #[test]
    fn amounts_parse_exactly_in_the_currencys_minor_units() {
        let sar = Currency::SAR;
        assert_eq!(Money::parse("1250", sar).unwrap().minor, 125_000);
        assert_eq!(Money::parse("1,250.5", sar).unwrap().minor, 125_050);
        assert_eq!(Money::parse(" 0.1 ", sar).unwrap().minor, 10);
        // 0.1 + 0.2 is not 0.30000000000000004 here.
        let sum = Money::parse("0.1", sar).unwrap().minor + Money::parse("0.2", sar).unwrap().minor;
        assert_eq!(sum, Money::parse("0.3", sar).unwrap().minor);
        assert_eq!(
            Money::parse("12.345", currency("kwd")).unwrap().minor,
            12_345
        );
        assert_eq!(Money::parse("5000", currency("JPY")).unwrap().minor, 5000);
        for bad in ["", "abc", "-5", "1.2.3", "12.345", "1e3", "٫"] {
            assert!(Money::parse(bad, sar).is_err(), "{bad:?} should be refused");
        }
        assert!(Money::parse("1.5", currency("JPY")).is_err());
        assert!(Money::parse("99999999999999999999", sar).is_err());
    }

    #[test]
    fn eastern_arabic_digits_and_separators_are_amounts_too() {
        let sar = Currency::SAR;
        assert_eq!(Money::parse("١٬٢٥٠٫٥٠", sar).unwrap().minor, 125_050);
        assert_eq!(Money::parse("۳۰۰", sar).unwrap().minor, 30_000);
    }

    #[test]
    fn json_numbers_are_read_through_their_decimal_text() {
        let sar = Currency::SAR;
        let m = Money::from_json(&serde_json::json!(1250.1), sar).unwrap();
        assert_eq!(m.minor, 125_010);
        assert_eq!(m.major(), "1250.10");
        assert_eq!(m.to_string(), "1250.10 SAR");
        assert_eq!(
            Money::from_json(&serde_json::json!("75.25"), sar)
                .unwrap()
                .minor,
            7525
        );
        assert!(Money::from_json(&serde_json::json!(true), sar).is_err());
        assert_eq!(m.major_json(), serde_json::json!(1250.1));
        assert_eq!(Money::new(5, currency("KWD")).major(), "0.005");
    }

    #[test]
    fn shares_in_basis_points_round_half_up_to_a_minor_unit() {
        let m = Money::new(12_345, Currency::SAR);
        // 2.5 % of 123.45 = 3.08625 → 3.09
        assert_eq!(m.share_bps(250).unwrap().minor, 309);
        assert_eq!(
            Money::new(0, Currency::SAR).share_bps(250).unwrap().minor,
            0
        );
    }

    #[test]
    fn currencies_are_three_letters() {
        assert_eq!(currency(" usd ").as_str(), "USD");
        for bad in ["", "US", "USDT", "U$D", "ريال"] {
            assert!(Currency::parse(bad).is_err(), "{bad:?}");
        }
    }
}
