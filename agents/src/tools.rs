//! Every tool an agent may be given: its name, what kind of effect it has, the description the
//! model reads, and its JSON schema. The schema is the one source of truth for the arguments: the
//! model is offered it, and [`validate`] checks every call against it in code before anything
//! runs. A call that does not fit is refused and the model is told exactly why.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde_json::Value;

/// What running a tool does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Changes the CRM: applied by the action handler inside the turn's transaction, once.
    Action,
    /// Reads the CRM, at once (`find_slots`, `get_affiliate_stats`).
    Read,
    /// Searches the knowledge base.
    Knowledge,
    /// Moves the conversation (`handoff`, `escalate`): handled by the agent itself.
    Control,
    /// Sends the contact something besides the reply (`send_template`): committed and sent with
    /// the turn's replies.
    Message,
}

/// One tool.
#[derive(Debug, Clone, Copy)]
pub struct ToolDef {
    pub name: &'static str,
    pub effect: Effect,
    pub description: &'static str,
    /// The JSON schema of its arguments (an object; no property beyond those listed).
    pub schema: &'static str,
}

/// Every tool, grouped by the agents that use them.
pub const TOOLS: &[ToolDef] = &[
    ToolDef {
        name: "search_knowledge",
        effect: Effect::Knowledge,
        description: "Search the business's knowledge base (products, pricing policy, guarantee, delivery, affiliates, FAQ) for facts to answer with. Ask in the contact's language. Each result has a citation (article › section): cite it when you use it, and never state a fact the results do not give.",
        schema: r#"{"type": "object", "properties": {
            "query": {"type": "string", "minLength": 1, "maxLength": 500, "description": "What to look up, e.g. «ضمان السبائك» or \"buyback price\""},
            "limit": {"type": "integer", "minimum": 1, "maximum": 8}},
            "required": ["query"], "additionalProperties": false}"#,
    },
    ToolDef {
        name: "create_lead",
        effect: Effect::Action,
        description: "Create the lead for this contact once you know what they need. Record the contact's name and company if they gave them.",
        schema: r#"{"type": "object", "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 120, "description": "The contact's name as they wrote it"},
            "company": {"type": "string", "minLength": 1, "maxLength": 200},
            "need": {"type": "string", "minLength": 1, "maxLength": 1000, "description": "What they are looking for, in their words"},
            "sector": {"type": "string", "minLength": 1, "maxLength": 100},
            "territory": {"type": "string", "minLength": 1, "maxLength": 100, "description": "City or region"}},
            "required": ["need"], "additionalProperties": false}"#,
    },
    ToolDef {
        name: "update_contact",
        effect: Effect::Action,
        description: "Correct or complete the contact's name or language.",
        schema: r#"{"type": "object", "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 120},
            "locale": {"type": "string", "enum": ["ar", "en", "fr", "ur", "hi"]}},
            "additionalProperties": false}"#,
    },
    ToolDef {
        name: "update_lead",
        effect: Effect::Action,
        description: "Record what you learnt about the contact's lead: company, need, budget, timeline, decision maker, sector, territory.",
        schema: r#"{"type": "object", "properties": {
            "company": {"type": "string", "minLength": 1, "maxLength": 200},
            "need": {"type": "string", "minLength": 1, "maxLength": 1000},
            "budget": {"type": "string", "minLength": 1, "maxLength": 200, "description": "As the contact put it, e.g. «٥٠ ألف ريال»"},
            "timeline": {"type": "string", "minLength": 1, "maxLength": 200},
            "authority": {"type": "string", "minLength": 1, "maxLength": 200, "description": "Who decides"},
            "sector": {"type": "string", "minLength": 1, "maxLength": 100},
            "territory": {"type": "string", "minLength": 1, "maxLength": 100}},
            "additionalProperties": false}"#,
    },
    ToolDef {
        name: "set_qualification",
        effect: Effect::Action,
        description: "Conclude qualification: qualified (budget, authority, need and timeline are known and fit) or not, with the reason. A qualified lead goes to the sales agent.",
        schema: r#"{"type": "object", "properties": {
            "qualified": {"type": "boolean"},
            "budget": {"type": "string", "minLength": 1, "maxLength": 200},
            "authority": {"type": "string", "minLength": 1, "maxLength": 200},
            "need": {"type": "string", "minLength": 1, "maxLength": 1000},
            "timeline": {"type": "string", "minLength": 1, "maxLength": 200},
            "reason": {"type": "string", "minLength": 1, "maxLength": 1000}},
            "required": ["qualified", "reason"], "additionalProperties": false}"#,
    },
    ToolDef {
        name: "set_lead_score",
        effect: Effect::Action,
        description: "Score the lead from 0 to 100, with the reasons and the points each adds or removes.",
        schema: r#"{"type": "object", "properties": {
            "score": {"type": "integer", "minimum": 0, "maximum": 100},
            "reasons": {"type": "array", "minItems": 1, "maxItems": 10, "items": {"type": "object", "properties": {
                "reason": {"type": "string", "minLength": 1, "maxLength": 300},
                "points": {"type": "integer", "minimum": -100, "maximum": 100}},
                "required": ["reason", "points"], "additionalProperties": false}}},
            "required": ["score", "reasons"], "additionalProperties": false}"#,
    },
    ToolDef {
        name: "assign_lead",
        effect: Effect::Action,
        description: "Assign the lead to the eligible rep with the lightest load for its sector and territory.",
        schema: r#"{"type": "object", "properties": {
            "reason": {"type": "string", "minLength": 1, "maxLength": 500}},
            "additionalProperties": false}"#,
    },
    ToolDef {
        name: "create_deal",
        effect: Effect::Action,
        description: "Open a deal for this contact's lead when they want to buy: a title, the amount in major units (e.g. 12500.50) and the currency.",
        schema: r#"{"type": "object", "properties": {
            "title": {"type": "string", "minLength": 1, "maxLength": 200},
            "amount": {"type": "number", "minimum": 0, "maximum": 1000000000},
            "currency": {"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217, e.g. SAR, AED, USD"},
            "expected_close_date": {"type": "string", "format": "date"}},
            "required": ["title", "amount", "currency"], "additionalProperties": false}"#,
    },
    ToolDef {
        name: "update_deal",
        effect: Effect::Action,
        description: "Update the contact's open deal: its win probability and the next step.",
        schema: r#"{"type": "object", "properties": {
            "probability": {"type": "integer", "minimum": 0, "maximum": 100},
            "next_step": {"type": "string", "minLength": 1, "maxLength": 500}},
            "additionalProperties": false}"#,
    },
    ToolDef {
        name: "create_task",
        effect: Effect::Action,
        description: "Give the deal's owner a task (it reaches them as a notification).",
        schema: r#"{"type": "object", "properties": {
            "title": {"type": "string", "minLength": 1, "maxLength": 200},
            "due_date": {"type": "string", "format": "date"},
            "notes": {"type": "string", "minLength": 1, "maxLength": 1000}},
            "required": ["title"], "additionalProperties": false}"#,
    },
    ToolDef {
        name: "write_forecast",
        effect: Effect::Action,
        description: "Record the revenue forecast for a period with the reasons behind it.",
        schema: r#"{"type": "object", "properties": {
            "period": {"type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])$", "description": "YYYY-MM"},
            "amount": {"type": "number", "minimum": 0},
            "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "reasons": {"type": "string", "minLength": 1, "maxLength": 2000}},
            "required": ["period", "amount", "currency", "reasons"], "additionalProperties": false}"#,
    },
    ToolDef {
        name: "send_template",
        effect: Effect::Message,
        description: "Send an approved WhatsApp template (required outside the 24-hour window).",
        schema: r#"{"type": "object", "properties": {
            "template": {"type": "string", "pattern": "^[a-z0-9_]{1,512}$"},
            "language": {"type": "string", "pattern": "^[a-z]{2}(_[A-Z]{2})?$", "description": "e.g. ar, en_US"},
            "parameters": {"type": "array", "maxItems": 10, "items": {"type": "string", "minLength": 1, "maxLength": 1000}}},
            "required": ["template", "language"], "additionalProperties": false}"#,
    },
    ToolDef {
        name: "schedule_follow_up",
        effect: Effect::Action,
        description: "Come back to this contact in a number of days if they do not write first.",
        schema: r#"{"type": "object", "properties": {
            "in_days": {"type": "integer", "minimum": 1, "maximum": 90},
            "note": {"type": "string", "minLength": 1, "maxLength": 500}},
            "required": ["in_days"], "additionalProperties": false}"#,
    },
    ToolDef {
        name: "mark_lost",
        effect: Effect::Action,
        description: "Close the contact's lead as lost, with the reason (an opt-out also records the refusal of consent).",
        schema: r#"{"type": "object", "properties": {
            "reason": {"type": "string", "minLength": 1, "maxLength": 500},
            "opted_out": {"type": "boolean"}},
            "required": ["reason"], "additionalProperties": false}"#,
    },
    ToolDef {
        name: "find_slots",
        effect: Effect::Read,
        description: "Free meeting slots of the contact's rep (or any rep) in the coming days, in the tenant's time.",
        schema: r#"{"type": "object", "properties": {
            "days_ahead": {"type": "integer", "minimum": 1, "maximum": 30},
            "duration_minutes": {"type": "integer", "minimum": 15, "maximum": 240}},
            "additionalProperties": false}"#,
    },
    ToolDef {
        name: "book_meeting",
        effect: Effect::Action,
        description: "Book a meeting at a slot find_slots offered (its exact starts_at), once the contact chose it.",
        schema: r#"{"type": "object", "properties": {
            "starts_at": {"type": "string", "format": "date-time", "description": "RFC 3339, as find_slots gave it"},
            "duration_minutes": {"type": "integer", "minimum": 15, "maximum": 240},
            "title": {"type": "string", "minLength": 1, "maxLength": 200}},
            "required": ["starts_at"], "additionalProperties": false}"#,
    },
    ToolDef {
        name: "reschedule_meeting",
        effect: Effect::Action,
        description: "Move the contact's next meeting to another free slot.",
        schema: r#"{"type": "object", "properties": {
            "starts_at": {"type": "string", "format": "date-time"},
            "duration_minutes": {"type": "integer", "minimum": 15, "maximum": 240}},
            "required": ["starts_at"], "additionalProperties": false}"#,
    },
    ToolDef {
        name: "cancel_meeting",
        effect: Effect::Action,
        description: "Cancel the contact's next meeting.",
        schema: r#"{"type": "object", "properties": {
            "reason": {"type": "string", "minLength": 1, "maxLength": 500}},
            "required": ["reason"], "additionalProperties": false}"#,
    },
    ToolDef {
        name: "create_proposal",
        effect: Effect::Action,
        description: "Draft a proposal for the contact's deal. A discount beyond the rep's limit waits for a manager's approval.",
        schema: r#"{"type": "object", "properties": {
            "title": {"type": "string", "minLength": 1, "maxLength": 200},
            "body": {"type": "string", "minLength": 1, "maxLength": 20000, "description": "Markdown, in the contact's language"},
            "discount_percent": {"type": "number", "minimum": 0, "maximum": 100}},
            "required": ["title", "body"], "additionalProperties": false}"#,
    },
    ToolDef {
        name: "send_proposal",
        effect: Effect::Action,
        description: "Send the contact's latest draft proposal.",
        schema: r#"{"type": "object", "properties": {}, "additionalProperties": false}"#,
    },
    ToolDef {
        name: "create_affiliate_application",
        effect: Effect::Action,
        description: "Register this contact's application to the affiliate programme.",
        schema: r#"{"type": "object", "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "email": {"type": "string", "format": "email"},
            "experience": {"type": "string", "minLength": 1, "maxLength": 2000},
            "audience": {"type": "string", "minLength": 1, "maxLength": 1000, "description": "Who they would refer"}},
            "required": ["name", "experience"], "additionalProperties": false}"#,
    },
    ToolDef {
        name: "complete_onboarding_step",
        effect: Effect::Action,
        description: "Mark an onboarding step of this affiliate done.",
        schema: r#"{"type": "object", "properties": {
            "step": {"type": "string", "enum": ["contract", "training", "payout_details"]}},
            "required": ["step"], "additionalProperties": false}"#,
    },
    ToolDef {
        name: "issue_referral_code",
        effect: Effect::Action,
        description: "Activate this affiliate and give them their referral code.",
        schema: r#"{"type": "object", "properties": {}, "additionalProperties": false}"#,
    },
    ToolDef {
        name: "get_affiliate_stats",
        effect: Effect::Read,
        description: "This affiliate's referred leads, won deals and commissions.",
        schema: r#"{"type": "object", "properties": {
            "days": {"type": "integer", "minimum": 1, "maximum": 366}},
            "additionalProperties": false}"#,
    },
    ToolDef {
        name: "calculate_commission",
        effect: Effect::Read,
        description: "The commission the rules give for an amount, to explain it to an affiliate or rep.",
        schema: r#"{"type": "object", "properties": {
            "amount": {"type": "number", "minimum": 0},
            "currency": {"type": "string", "pattern": "^[A-Z]{3}$"}},
            "required": ["amount", "currency"], "additionalProperties": false}"#,
    },
    ToolDef {
        name: "approve_commissions",
        effect: Effect::Action,
        description: "Review the won deal's commission lines: each up to its rule's approval threshold is approved; a larger one waits for a manager's approval.",
        schema: r#"{"type": "object", "properties": {
            "note": {"type": "string", "minLength": 1, "maxLength": 500, "description": "How the commissions follow from the rules"}},
            "additionalProperties": false}"#,
    },
    ToolDef {
        name: "open_commission_dispute",
        effect: Effect::Action,
        description: "Open a dispute about one of this affiliate's commissions.",
        schema: r#"{"type": "object", "properties": {
            "reason": {"type": "string", "minLength": 1, "maxLength": 2000}},
            "required": ["reason"], "additionalProperties": false}"#,
    },
    ToolDef {
        name: "open_guarantee_claim",
        effect: Effect::Action,
        description: "Open a gold-guarantee claim for this contact: what happened and the amount claimed in major units.",
        schema: r#"{"type": "object", "properties": {
            "description": {"type": "string", "minLength": 1, "maxLength": 4000},
            "amount": {"type": "number", "minimum": 0, "maximum": 1000000000},
            "currency": {"type": "string", "pattern": "^[A-Z]{3}$"}},
            "required": ["description", "amount", "currency"], "additionalProperties": false}"#,
    },
    ToolDef {
        name: "attach_evidence",
        effect: Effect::Action,
        description: "Add evidence the contact gave (a description, a receipt number, a link) to their open claim.",
        schema: r#"{"type": "object", "properties": {
            "description": {"type": "string", "minLength": 1, "maxLength": 2000},
            "url": {"type": "string", "format": "uri"}},
            "required": ["description"], "additionalProperties": false}"#,
    },
    ToolDef {
        name: "request_refund",
        effect: Effect::Action,
        description: "Ask for a refund on the contact's open claim. Every refund waits for a person's approval: tell the contact it is under review, never that it is paid.",
        schema: r#"{"type": "object", "properties": {
            "amount": {"type": "number", "minimum": 0, "maximum": 1000000000},
            "reason": {"type": "string", "minLength": 1, "maxLength": 2000}},
            "required": ["amount", "reason"], "additionalProperties": false}"#,
    },
    ToolDef {
        name: "assign_conversation",
        effect: Effect::Action,
        description: "Give the conversation to a rep: the lead's owner, else the rep with the fewest escalated conversations. From then on no agent writes to the contact until the rep hands it back.",
        schema: r#"{"type": "object", "properties": {
            "reason": {"type": "string", "minLength": 1, "maxLength": 1000}},
            "additionalProperties": false}"#,
    },
    ToolDef {
        name: "notify_rep",
        effect: Effect::Action,
        description: "Send the assigned rep (or every rep, if none) a summary of the conversation: who the contact is, what they want, what was promised, why a person is needed.",
        schema: r#"{"type": "object", "properties": {
            "summary": {"type": "string", "minLength": 1, "maxLength": 2000}},
            "required": ["summary"], "additionalProperties": false}"#,
    },
    ToolDef {
        name: "handoff",
        effect: Effect::Control,
        description: "Pass the conversation to another specialised agent, with the reason; it answers next, seeing the whole conversation.",
        schema: r#"{"type": "object", "properties": {
            "to_agent": {"type": "string"},
            "reason": {"type": "string", "minLength": 1, "maxLength": 1000}},
            "required": ["to_agent", "reason"], "additionalProperties": false}"#,
    },
    ToolDef {
        name: "escalate",
        effect: Effect::Control,
        description: "Hand the conversation to a human sales rep (legal matters, price exceptions, an explicit request for a person). The escalation agent tells the contact; do not reply yourself.",
        schema: r#"{"type": "object", "properties": {
            "reason": {"type": "string", "minLength": 1, "maxLength": 1000, "description": "Why a human is needed"}},
            "required": ["reason"], "additionalProperties": false}"#,
    },
];

static SCHEMAS: LazyLock<HashMap<&'static str, Value>> = LazyLock::new(|| {
    TOOLS
        .iter()
        .map(|t| {
            let schema = serde_json::from_str(t.schema)
                .unwrap_or_else(|e| panic!("the schema of {} is not JSON: {e}", t.name));
            (t.name, schema)
        })
        .collect()
});

/// The tool called `name`.
pub fn find(name: &str) -> Option<&'static ToolDef> {
    TOOLS.iter().find(|t| t.name == name)
}

/// Every tool's name.
pub fn names() -> impl Iterator<Item = &'static str> {
    TOOLS.iter().map(|t| t.name)
}

/// The parsed JSON schema of `name`'s arguments.
pub fn schema(name: &str) -> Option<&'static Value> {
    SCHEMAS.get(name)
}

/// Checks `arguments` against `name`'s schema: `Err` says what is wrong and where, in words the
/// model can act on.
pub fn validate(name: &str, arguments: &Value) -> Result<(), String> {
    let schema = schema(name).ok_or_else(|| format!("there is no tool {name:?}"))?;
    check(schema, arguments, "arguments")
}

/// The subset of JSON Schema the tools use: object (properties, required, additionalProperties),
/// string (minLength, maxLength, enum, pattern, format date / date-time / email / uri), integer
/// and number (minimum, maximum), boolean, array (items, minItems, maxItems).
fn check(schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let expected = schema.get("type").and_then(Value::as_str).unwrap_or("any");
    let num = |key: &str| schema.get(key).and_then(Value::as_f64);
    let count = |key: &str| schema.get(key).and_then(Value::as_u64);
    match (expected, value) {
        ("object", Value::Object(map)) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            for required in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if map.get(required).is_none_or(Value::is_null) {
                    return Err(format!("{at}.{required} is required"));
                }
            }
            for (key, v) in map {
                match properties.and_then(|p| p.get(key)) {
                    Some(_) if v.is_null() => {}
                    Some(property) => check(property, v, &format!("{at}.{key}"))?,
                    None => {
                        let known: Vec<&str> = properties
                            .map(|p| p.keys().map(String::as_str).collect())
                            .unwrap_or_default();
                        return Err(format!(
                            "{at}.{key} is not a parameter of this tool (it takes: {})",
                            if known.is_empty() {
                                "nothing".to_owned()
                            } else {
                                known.join(", ")
                            }
                        ));
                    }
                }
            }
            Ok(())
        }
        ("string", Value::String(s)) => {
            let chars = s.chars().count() as u64;
            if s.trim().is_empty() && count("minLength").is_some_and(|n| n > 0) {
                return Err(format!("{at} must not be empty"));
            }
            if let Some(min) = count("minLength").filter(|m| chars < *m) {
                return Err(format!("{at} must be at least {min} characters"));
            }
            if let Some(max) = count("maxLength").filter(|m| chars > *m) {
                return Err(format!("{at} must be at most {max} characters"));
            }
            if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
                && !allowed.iter().any(|a| a.as_str() == Some(s))
            {
                let allowed: Vec<&str> = allowed.iter().filter_map(Value::as_str).collect();
                return Err(format!("{at} must be one of: {}", allowed.join(", ")));
            }
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
                && !matches_pattern(pattern, s)
            {
                return Err(format!("{at} must match {pattern}"));
            }
            match schema.get("format").and_then(Value::as_str) {
                Some("date") if !is_date(s) => Err(format!("{at} must be a date, YYYY-MM-DD")),
                Some("date-time") if !is_date_time(s) => Err(format!(
                    "{at} must be an RFC 3339 date and time, e.g. 2026-12-01T10:00:00+03:00"
                )),
                Some("email") if !is_email(s) => Err(format!("{at} must be an email address")),
                Some("uri") if !(s.starts_with("https://") || s.starts_with("http://")) => {
                    Err(format!("{at} must be an http(s) link"))
                }
                _ => Ok(()),
            }
        }
        ("integer", Value::Number(n)) if n.is_i64() || n.is_u64() => {
            let v = n.as_f64().unwrap_or(f64::NAN);
            range(v, num("minimum"), num("maximum"), at)
        }
        ("number", Value::Number(n)) => {
            let v = n.as_f64().unwrap_or(f64::NAN);
            range(v, num("minimum"), num("maximum"), at)
        }
        ("boolean", Value::Bool(_)) | ("any", _) => Ok(()),
        ("array", Value::Array(items)) => {
            let len = items.len() as u64;
            if let Some(min) = count("minItems").filter(|m| len < *m) {
                return Err(format!("{at} must have at least {min} items"));
            }
            if let Some(max) = count("maxItems").filter(|m| len > *m) {
                return Err(format!("{at} must have at most {max} items"));
            }
            if let Some(item) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    check(item, v, &format!("{at}[{i}]"))?;
                }
            }
            Ok(())
        }
        (expected, _) => Err(format!(
            "{at} must be {}",
            match expected {
                "object" => "an object",
                "integer" => "a whole number",
                "number" => "a number",
                "string" => "text",
                "boolean" => "true or false",
                "array" => "an array",
                other => other,
            }
        )),
    }
}

fn range(v: f64, min: Option<f64>, max: Option<f64>, at: &str) -> Result<(), String> {
    if !v.is_finite() {
        return Err(format!("{at} must be a finite number"));
    }
    match (min, max) {
        (Some(min), Some(max)) if !(min..=max).contains(&v) => {
            Err(format!("{at} must be between {min} and {max}"))
        }
        (Some(min), None) if v < min => Err(format!("{at} must be at least {min}")),
        (None, Some(max)) if v > max => Err(format!("{at} must be at most {max}")),
        _ => Ok(()),
    }
}

/// The patterns the schemas use, without a regex engine: `^[A-Z]{3}$` (currency), `^[a-z0-9_]{1,512}$`
/// (template names), `^[a-z]{2}(_[A-Z]{2})?$` (language codes) and `YYYY-MM` periods.
fn matches_pattern(pattern: &str, s: &str) -> bool {
    let b = s.as_bytes();
    match pattern {
        "^[A-Z]{3}$" => b.len() == 3 && b.iter().all(u8::is_ascii_uppercase),
        "^[a-z0-9_]{1,512}$" => {
            (1..=512).contains(&b.len())
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
        }
        "^[a-z]{2}(_[A-Z]{2})?$" => match b.len() {
            2 => b.iter().all(u8::is_ascii_lowercase),
            5 => {
                b[..2].iter().all(u8::is_ascii_lowercase)
                    && b[2] == b'_'
                    && b[3..].iter().all(u8::is_ascii_uppercase)
            }
            _ => false,
        },
        "^[0-9]{4}-(0[1-9]|1[0-2])$" => {
            b.len() == 7
                && b[..4].iter().all(u8::is_ascii_digit)
                && b[4] == b'-'
                && matches!(s[5..].parse::<u8>(), Ok(1..=12))
                && b[5..].iter().all(u8::is_ascii_digit)
        }
        other => panic!("the tool schemas use a pattern the validator does not know: {other}"),
    }
}

fn is_date(s: &str) -> bool {
    time::Date::parse(s, &time::format_description::well_known::Iso8601::DATE).is_ok()
        && s.len() == 10
}

fn is_date_time(s: &str) -> bool {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
}

fn is_email(s: &str) -> bool {
    runtime::Email::parse(s).is_ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_schema_is_an_object_schema_the_validator_understands() {
        for tool in TOOLS {
            let schema = schema(tool.name).expect("parsed");
            assert_eq!(schema["type"], "object", "{}", tool.name);
            assert_eq!(schema["additionalProperties"], false, "{}", tool.name);
            // Every pattern is one the validator knows (it panics otherwise).
            for property in schema["properties"].as_object().unwrap().values() {
                if let Some(p) = property["pattern"].as_str() {
                    matches_pattern(p, "");
                }
            }
        }
        assert_eq!(names().count(), TOOLS.len());
        let mut sorted: Vec<&str> = names().collect();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), TOOLS.len(), "tool names are unique");
    }

    #[test]
    fn calls_that_do_not_fit_are_refused_with_the_reason() {
        let ok = json!({"title": "سبائك ذهب ١٠٠ غرام", "amount": 26500.5, "currency": "SAR"});
        assert_eq!(validate("create_deal", &ok), Ok(()));
        let cases = [
            (
                json!({"title": "x", "amount": 1}),
                "arguments.currency is required",
            ),
            (
                json!({"title": "x", "amount": -1, "currency": "SAR"}),
                "arguments.amount must be between 0 and 1000000000",
            ),
            (
                json!({"title": "x", "amount": 1, "currency": "sar"}),
                "arguments.currency must match ^[A-Z]{3}$",
            ),
            (
                json!({"title": "x", "amount": "1", "currency": "SAR"}),
                "arguments.amount must be a number",
            ),
            (
                json!({"title": "x", "amount": 1, "currency": "SAR", "tenant_id": "t"}),
                "arguments.tenant_id is not a parameter of this tool (it takes: title, amount, currency, expected_close_date)",
            ),
            (
                json!({"title": "  ", "amount": 1, "currency": "SAR"}),
                "arguments.title must not be empty",
            ),
            (json!([1]), "arguments must be an object"),
        ];
        for (args, message) in cases {
            assert_eq!(
                validate("create_deal", &args),
                Err(message.into()),
                "{args}"
            );
        }
        assert_eq!(
            validate("book_meeting", &json!({"starts_at": "tomorrow 10am"})),
            Err("arguments.starts_at must be an RFC 3339 date and time, e.g. 2026-12-01T10:00:00+03:00".into())
        );
        assert_eq!(
            validate(
                "set_lead_score",
                &json!({"score": 70, "reasons": [{"reason": "ميزانية واضحة", "points": 2.5}]})
            ),
            Err("arguments.reasons[0].points must be a whole number".into())
        );
        assert_eq!(
            validate("update_contact", &json!({"locale": "de"})),
            Err("arguments.locale must be one of: ar, en, fr, ur, hi".into())
        );
        assert!(validate("no_such_tool", &json!({})).is_err());
    }
}
