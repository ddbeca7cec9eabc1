//! Parsing a WhatsApp webhook notification into inbox batches.
//!
//! Lenient by design: one request may carry several entries, each several changes, each several
//! messages and statuses, and every one of them is looked at. Anything that cannot be understood
//! is returned as [`Unroutable`] (stored for an operator), never silently dropped; only bytes that
//! are not JSON at all are an error.

use std::collections::HashMap;

use runtime::inbox::{
    Batch, Channel, ContactIdentity, DeliveryStatus, InboundMessage, MessageKind, StatusUpdate,
    Unroutable, normalize_phone,
};
use serde_json::Value;
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("the body is not JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Parses a notification body into one batch per (entry, change) and the parts it could not use.
pub fn parse_notification(body: &[u8]) -> Result<(Vec<Batch>, Vec<Unroutable>), ParseError> {
    let root: Value = serde_json::from_slice(body)?;
    let mut batches = Vec::new();
    let mut rejects = Vec::new();
    let reject = |reason: String, address: Option<String>, payload: &Value| Unroutable {
        channel: Channel::Whatsapp,
        address,
        reason,
        payload: payload.clone(),
    };

    if root.get("object").and_then(Value::as_str) != Some("whatsapp_business_account") {
        rejects.push(reject(
            "not a whatsapp_business_account notification".into(),
            None,
            &root,
        ));
        return Ok((batches, rejects));
    }
    let Some(entries) = root.get("entry").and_then(Value::as_array) else {
        rejects.push(reject(
            "notification without an entry array".into(),
            None,
            &root,
        ));
        return Ok((batches, rejects));
    };
    for entry in entries {
        let changes = entry
            .get("changes")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if changes.is_empty() {
            rejects.push(reject("entry without changes".into(), None, entry));
        }
        for change in changes {
            let field = change.get("field").and_then(Value::as_str).unwrap_or("");
            let value = change.get("value").unwrap_or(&Value::Null);
            let address = value.pointer("/metadata/phone_number_id").and_then(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .or_else(|| v.as_u64().map(|n| n.to_string()))
            });
            if field != "messages" {
                rejects.push(reject(
                    format!("unsupported change field {field:?}"),
                    address,
                    change,
                ));
                continue;
            }
            let Some(address) = address else {
                rejects.push(reject(
                    "change without metadata.phone_number_id".into(),
                    None,
                    change,
                ));
                continue;
            };
            let (batch, mut bad) = parse_value(&address, value);
            rejects.append(&mut bad);
            if !batch.messages.is_empty() || !batch.statuses.is_empty() {
                batches.push(batch);
            }
        }
    }
    Ok((batches, rejects))
}

fn parse_value(address: &str, value: &Value) -> (Batch, Vec<Unroutable>) {
    let mut rejects = Vec::new();
    let reject = |reason: String, payload: &Value| Unroutable {
        channel: Channel::Whatsapp,
        address: Some(address.to_owned()),
        reason,
        payload: payload.clone(),
    };

    // The contacts array names senders and may carry both identities (phone and BSUID) when the
    // message itself carries one: index it by each.
    let mut profiles: HashMap<String, &Value> = HashMap::new();
    for contact in value
        .get("contacts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for key in ["wa_id", "user_id"] {
            if let Some(id) = contact.get(key).and_then(Value::as_str) {
                profiles.insert(id.to_owned(), contact);
            }
        }
    }

    let mut messages = Vec::new();
    for m in value
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match parse_message(m, &profiles) {
            Ok(message) => messages.push(message),
            Err(reason) => rejects.push(reject(reason, m)),
        }
    }
    let mut statuses = Vec::new();
    for s in value
        .get("statuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match parse_status(s) {
            Ok(status) => statuses.push(status),
            Err(reason) => rejects.push(reject(reason, s)),
        }
    }
    if let Some(errors) = value.get("errors") {
        rejects.push(reject("provider error notification".into(), errors));
    }
    let batch = Batch {
        channel: Channel::Whatsapp,
        address: address.to_owned(),
        messages,
        statuses,
        raw: value.clone(),
    };
    (batch, rejects)
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn timestamp(v: &Value) -> Option<OffsetDateTime> {
    let seconds = match v.get("timestamp")? {
        Value::String(s) => s.parse::<i64>().ok()?,
        Value::Number(n) => n.as_i64()?,
        _ => return None,
    };
    OffsetDateTime::from_unix_timestamp(seconds).ok()
}

fn parse_message(m: &Value, profiles: &HashMap<String, &Value>) -> Result<InboundMessage, String> {
    let id = str_at(m, "/id").ok_or("message without an id")?;
    let from_phone = str_at(m, "/from");
    let from_bsuid = str_at(m, "/from_user_id");
    let profile = from_phone
        .and_then(|p| profiles.get(p))
        .or_else(|| from_bsuid.and_then(|b| profiles.get(b)));
    let phone = from_phone
        .or_else(|| profile.and_then(|p| str_at(p, "/wa_id")))
        .and_then(normalize_phone);
    let bsuid = from_bsuid
        .or_else(|| profile.and_then(|p| str_at(p, "/user_id")))
        .map(str::to_owned);
    if phone.is_none() && bsuid.is_none() {
        return Err("message without a sender (no from, from_user_id or contact)".into());
    }
    let from = ContactIdentity {
        phone,
        whatsapp_bsuid: bsuid,
        email: None,
        chat: None,
        display_name: profile
            .and_then(|p| str_at(p, "/profile/name"))
            .map(str::to_owned),
    };

    let kind_name = m.get("type").and_then(Value::as_str).unwrap_or("");
    let (kind, body, triggers_turn) = match kind_name {
        "text" => (
            MessageKind::Text,
            str_at(m, "/text/body").map(str::to_owned),
            true,
        ),
        "image" | "video" | "audio" | "document" | "sticker" => {
            let kind = match kind_name {
                "image" => MessageKind::Image,
                "video" => MessageKind::Video,
                "audio" => MessageKind::Audio,
                "document" => MessageKind::Document,
                _ => MessageKind::Sticker,
            };
            let caption = str_at(m, &format!("/{kind_name}/caption"))
                .or_else(|| str_at(m, &format!("/{kind_name}/filename")))
                .map(str::to_owned);
            (kind, caption, true)
        }
        "location" => {
            let loc = &m["location"];
            let coords = match (loc.get("latitude"), loc.get("longitude")) {
                (Some(lat), Some(lon)) => Some(format!("{lat}, {lon}")),
                _ => None,
            };
            let parts: Vec<String> = [str_at(loc, "/name"), str_at(loc, "/address")]
                .into_iter()
                .flatten()
                .map(str::to_owned)
                .chain(coords)
                .collect();
            (
                MessageKind::Location,
                (!parts.is_empty()).then(|| parts.join(" — ")),
                true,
            )
        }
        "contacts" => {
            let names: Vec<&str> = m["contacts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| str_at(c, "/name/formatted_name"))
                .collect();
            (
                MessageKind::Contacts,
                (!names.is_empty()).then(|| names.join(", ")),
                true,
            )
        }
        // An empty or missing emoji removes a reaction. Reactions need no answer.
        "reaction" => (
            MessageKind::Reaction,
            str_at(m, "/reaction/emoji").map(str::to_owned),
            false,
        ),
        "interactive" => match str_at(m, "/interactive/type") {
            Some("button_reply") => (
                MessageKind::Interactive,
                str_at(m, "/interactive/button_reply/title").map(str::to_owned),
                true,
            ),
            Some("list_reply") => (
                MessageKind::Interactive,
                str_at(m, "/interactive/list_reply/title").map(str::to_owned),
                true,
            ),
            // A flow reply's response_json is a string that may not be valid JSON: keep it as text.
            Some("nfm_reply") => (
                MessageKind::FlowReply,
                str_at(m, "/interactive/nfm_reply/response_json")
                    .or_else(|| str_at(m, "/interactive/nfm_reply/body"))
                    .map(str::to_owned),
                true,
            ),
            _ => (MessageKind::Unsupported, None, true),
        },
        "button" => (
            MessageKind::Button,
            str_at(m, "/button/text").map(str::to_owned),
            true,
        ),
        _ => (MessageKind::Unsupported, None, true),
    };
    Ok(InboundMessage {
        provider_message_id: id.to_owned(),
        from,
        kind,
        body,
        payload: m.clone(),
        provider_timestamp: timestamp(m),
        triggers_turn,
    })
}

fn parse_status(s: &Value) -> Result<StatusUpdate, String> {
    let id = str_at(s, "/id").ok_or("status without an id")?;
    let status = match s.get("status").and_then(Value::as_str) {
        Some("sent") => DeliveryStatus::Sent,
        Some("delivered") => DeliveryStatus::Delivered,
        Some("read") => DeliveryStatus::Read,
        Some("failed") => DeliveryStatus::Failed,
        other => return Err(format!("unknown status {other:?}")),
    };
    Ok(StatusUpdate {
        provider_message_id: id.to_owned(),
        status,
        provider_timestamp: timestamp(s),
        errors: s.get("errors").cloned(),
        payload: s.clone(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn notification(value: &Value) -> Vec<u8> {
        json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": value}]}]})
            .to_string()
            .into_bytes()
    }

    fn metadata() -> Value {
        json!({"display_phone_number": "15550783881", "phone_number_id": "106540352242922"})
    }

    #[test]
    fn parses_the_documented_text_message_with_both_identities() {
        let body = notification(&json!({
            "messaging_product": "whatsapp",
            "metadata": metadata(),
            "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234", "user_id": "US.13491208655302741918"}],
            "messages": [{"from": "16505551234", "from_user_id": "US.13491208655302741918", "id": "wamid.HBgLMTY1",
                          "timestamp": "1749416383", "type": "text", "text": {"body": "Does it come in another color?"}}]
        }));
        let (batches, rejects) = parse_notification(&body).unwrap();
        assert!(rejects.is_empty());
        assert_eq!(batches.len(), 1);
        let b = &batches[0];
        assert_eq!(b.address, "106540352242922");
        let m = &b.messages[0];
        assert_eq!(m.provider_message_id, "wamid.HBgLMTY1");
        assert_eq!(m.kind, MessageKind::Text);
        assert_eq!(m.body.as_deref(), Some("Does it come in another color?"));
        assert_eq!(m.from.phone.as_deref(), Some("+16505551234"));
        assert_eq!(
            m.from.whatsapp_bsuid.as_deref(),
            Some("US.13491208655302741918")
        );
        assert_eq!(m.from.display_name.as_deref(), Some("Sheena Nelson"));
        assert_eq!(
            m.provider_timestamp.unwrap().unix_timestamp(),
            1_749_416_383
        );
    }

    #[test]
    fn a_bsuid_only_message_is_accepted() {
        let body = notification(&json!({
            "metadata": metadata(),
            "contacts": [{"profile": {"name": "ليلى"}, "user_id": "SA.998877"}],
            "messages": [{"from_user_id": "SA.998877", "id": "wamid.B", "timestamp": "1", "type": "text", "text": {"body": "مرحبا"}}]
        }));
        let (batches, rejects) = parse_notification(&body).unwrap();
        assert!(rejects.is_empty());
        let m = &batches[0].messages[0];
        assert_eq!(m.from.phone, None);
        assert_eq!(m.from.whatsapp_bsuid.as_deref(), Some("SA.998877"));
        assert_eq!(m.body.as_deref(), Some("مرحبا"));
    }

    #[test]
    fn every_message_type_is_kept_and_unknown_ones_are_unsupported() {
        let msg = |id: &str, kind: &str, extra: Value| {
            let mut m = json!({"from": "966500000001", "id": id, "timestamp": "1", "type": kind});
            m.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            m
        };
        let body = notification(&json!({
            "metadata": metadata(),
            "messages": [
                msg("1", "image", json!({"image": {"id": "MEDIA1", "caption": "صورة المنتج"}})),
                msg("2", "location", json!({"location": {"latitude": 24.7, "longitude": 46.6, "name": "الرياض"}})),
                msg("3", "reaction", json!({"reaction": {"message_id": "wamid.X", "emoji": ""}})),
                msg("4", "interactive", json!({"interactive": {"type": "button_reply", "button_reply": {"id": "b1", "title": "نعم"}}})),
                msg("5", "interactive", json!({"interactive": {"type": "list_reply", "list_reply": {"id": "l1", "title": "الباقة الذهبية"}}})),
                msg("6", "button", json!({"button": {"payload": "YES", "text": "موافق"}})),
                msg("7", "interactive", json!({"interactive": {"type": "nfm_reply", "nfm_reply": {"response_json": "{not json", "body": "Sent"}}})),
                msg("8", "hologram", json!({"hologram": {}})),
                msg("9", "contacts", json!({"contacts": [{"name": {"formatted_name": "Omar"}}]})),
            ]
        }));
        let (batches, rejects) = parse_notification(&body).unwrap();
        assert!(rejects.is_empty(), "{rejects:?}");
        let got: Vec<(MessageKind, Option<&str>, bool)> = batches[0]
            .messages
            .iter()
            .map(|m| (m.kind, m.body.as_deref(), m.triggers_turn))
            .collect();
        assert_eq!(
            got,
            vec![
                (MessageKind::Image, Some("صورة المنتج"), true),
                (MessageKind::Location, Some("الرياض — 24.7, 46.6"), true),
                (MessageKind::Reaction, None, false),
                (MessageKind::Interactive, Some("نعم"), true),
                (MessageKind::Interactive, Some("الباقة الذهبية"), true),
                (MessageKind::Button, Some("موافق"), true),
                (MessageKind::FlowReply, Some("{not json"), true),
                (MessageKind::Unsupported, None, true),
                (MessageKind::Contacts, Some("Omar"), true),
            ]
        );
    }

    #[test]
    fn every_entry_change_message_and_status_is_read() {
        let value = |pnid: &str, ids: &[&str]| {
            json!({"metadata": {"phone_number_id": pnid},
                   "messages": ids.iter().map(|id| json!({"from": "1555", "id": id, "type": "text", "text": {"body": id}})).collect::<Vec<_>>(),
                   "statuses": [{"id": format!("wamid.out.{pnid}"), "status": "read", "timestamp": "2", "recipient_id": "1555"}]})
        };
        let body = json!({"object": "whatsapp_business_account", "entry": [
            {"id": "A", "changes": [{"field": "messages", "value": value("111", &["a1", "a2"])}]},
            {"id": "B", "changes": [{"field": "messages", "value": value("222", &["b1", "b2"])},
                                    {"field": "account_update", "value": {"event": "x"}}]}
        ]});
        let (batches, rejects) = parse_notification(body.to_string().as_bytes()).unwrap();
        assert_eq!(batches.len(), 2);
        let ids: Vec<&str> = batches
            .iter()
            .flat_map(|b| b.messages.iter().map(|m| m.provider_message_id.as_str()))
            .collect();
        assert_eq!(ids, ["a1", "a2", "b1", "b2"]);
        assert!(
            batches
                .iter()
                .all(|b| b.statuses.len() == 1 && b.statuses[0].status == DeliveryStatus::Read)
        );
        assert_eq!(
            rejects.len(),
            1,
            "the unsupported field is kept, not dropped"
        );
    }

    #[test]
    fn bad_parts_become_unroutable_and_bad_bytes_an_error() {
        let body = notification(&json!({
            "metadata": metadata(),
            "messages": [{"type": "text", "text": {"body": "no id"}}, {"id": "x", "type": "text"}],
            "statuses": [{"id": "s", "status": "teleported"}]
        }));
        let (batches, rejects) = parse_notification(&body).unwrap();
        assert!(batches.is_empty());
        assert_eq!(rejects.len(), 3);
        assert!(parse_notification(b"{not json").is_err());
        assert!(parse_notification(b"\xff\xfe").is_err());
    }
}
