//! The WhatsApp [`ChannelSender`]: outbox payloads to Graph API sends.

use runtime::inbox::Channel;
use runtime::outbox::{ChannelAccount, ChannelSender, SendFailure, SendFuture};
use serde_json::Value;

use super::send::{GraphClient, SendError, template_message, text_message};

/// Sends outbox rows of the `whatsapp` channel through the Graph API.
#[derive(Clone, Debug)]
pub struct WhatsAppSender {
    graph: GraphClient,
}

impl WhatsAppSender {
    pub fn new(graph: GraphClient) -> Self {
        Self { graph }
    }
}

impl ChannelSender for WhatsAppSender {
    fn channel(&self) -> Channel {
        Channel::Whatsapp
    }

    fn send(&self, account: ChannelAccount, payload: Value, idempotency_key: String) -> SendFuture {
        let graph = self.graph.clone();
        Box::pin(async move {
            let token = account
                .credentials
                .get("access_token")
                .and_then(Value::as_str)
                .ok_or_else(|| SendFailure::Permanent {
                    message: "the WhatsApp account has no access_token".into(),
                })?;
            let to = payload.get("to").and_then(Value::as_str).ok_or_else(|| {
                SendFailure::Permanent {
                    message: "payload without `to`".into(),
                }
            })?;
            // The key comes back on status notifications, tying them to the outbox row.
            let message = match payload.get("type").and_then(Value::as_str) {
                Some("template") => {
                    let t = &payload["template"];
                    let parameters: Vec<&str> = t["parameters"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    template_message(
                        to,
                        t["name"].as_str().unwrap_or_default(),
                        t["language"].as_str().unwrap_or("ar"),
                        &parameters,
                        Some(&idempotency_key),
                    )
                }
                _ => {
                    let body = payload
                        .get("body")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let reply_to = payload.get("reply_to").and_then(Value::as_str);
                    text_message(to, body, reply_to, Some(&idempotency_key))
                }
            };
            graph
                .send(&account.address, token, &message)
                .await
                .map_err(|e| match e {
                    SendError::Retryable {
                        message,
                        retry_after,
                        ..
                    } => SendFailure::Retryable {
                        message,
                        retry_after,
                    },
                    SendError::WindowClosed { message } => SendFailure::WindowClosed { message },
                    SendError::Permanent { message, .. } => SendFailure::Permanent { message },
                })
        })
    }
}
