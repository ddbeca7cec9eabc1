//! The catalog of `/api/v1` routes and the OpenAPI 3.1 document made from it.
//!
//! [`CATALOG`] is the one list of every `/api/v1` route with its method, the roles allowed, its
//! request and response schemas and an example body. `GET /openapi.json` is generated from it,
//! `GET /docs` renders that document, and the security tests iterate it: every route against every
//! role, and every route that takes an id against another tenant's object. A route that is served
//! but missing here fails `api::openapi::catalog_matches_the_router` (tests/api/openapi.rs).

use axum::Json;
use axum::response::Html;
use serde_json::{Value, json};

use crate::auth::Role;

/// Ids of existing objects by kind (`user`, `lead`, …), for examples that refer to them.
pub type Ids = std::collections::HashMap<&'static str, String>;

/// The id of an object of `kind` in `ids`, or a placeholder.
fn id_of(ids: &Ids, kind: &str) -> String {
    ids.get(kind)
        .cloned()
        .unwrap_or_else(|| "00000000-0000-0000-0000-000000000000".to_owned())
}

/// One `/api/v1` route.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec {
    /// Lowercase HTTP method.
    pub method: &'static str,
    /// Under `/api/v1`, with `{id}` for the object's id.
    pub path: &'static str,
    pub summary: &'static str,
    pub tag: &'static str,
    /// `None`: no token needed (login).
    pub roles: Option<&'static [Role]>,
    /// Component schema of the JSON body, if any.
    pub request: Option<&'static str>,
    /// Component schema of the success body, and the success status.
    pub response: &'static str,
    pub status: u16,
    /// Query parameters: (name, JSON Schema type or enum source, description).
    pub query: &'static [(&'static str, &'static str, &'static str)],
    /// The kind of object `{id}` names, for routes that take one.
    pub object: Option<&'static str>,
    /// A valid example body (for documentation and the tests that drive every route), given the
    /// ids of objects made earlier by kind (empty for the document: placeholders are used).
    pub example: Option<fn(&Ids) -> Value>,
}

const PAGE: &[(&str, &str, &str)] = &[
    ("limit", "integer", "page size, 1–200 (default 50)"),
    ("cursor", "string", "the next_cursor of the previous page"),
];

const CONTACT_QUERY: &[(&str, &str, &str)] = &[
    ("q", "string", "part of the display name"),
    (
        "identity",
        "string",
        "a phone (any punctuation), email or BSUID",
    ),
    ("limit", "integer", "page size, 1–200 (default 50)"),
    ("cursor", "string", "the next_cursor of the previous page"),
];

const DEAL_QUERY: &[(&str, &str, &str)] = &[
    ("stage_id", "uuid", "only deals in this stage"),
    ("owner_user_id", "uuid", "only deals this user owns"),
    ("limit", "integer", "page size, 1–200 (default 50)"),
    ("cursor", "string", "the next_cursor of the previous page"),
];

const FORECAST_QUERY: &[(&str, &str, &str)] = &[
    ("from", "date", "first day included (YYYY-MM-DD)"),
    (
        "to",
        "date",
        "first day not included; at most three years after from",
    ),
    ("period", "Period", "month (default) or quarter"),
];

const USAGE_QUERY: &[(&str, &str, &str)] = &[
    (
        "from",
        "date",
        "first day included (YYYY-MM-DD, UTC); default the first of this month",
    ),
    ("to", "date", "first day not included; default tomorrow"),
];

const MEETING_QUERY: &[(&str, &str, &str)] = &[
    ("rep_user_id", "uuid", "only this rep's meetings"),
    (
        "from",
        "date-time",
        "starting at or after (RFC 3339); default now",
    ),
    (
        "to",
        "date-time",
        "starting before (RFC 3339); default 90 days after from",
    ),
    ("limit", "integer", "page size, 1–200 (default 50)"),
    ("cursor", "string", "the next_cursor of the previous page"),
];

const PROPOSAL_QUERY: &[(&str, &str, &str)] = &[
    ("deal_id", "uuid", "only this deal's proposals"),
    ("status", "ProposalStatus", "only proposals in this status"),
    ("limit", "integer", "page size, 1–200 (default 50)"),
    ("cursor", "string", "the next_cursor of the previous page"),
];

const CONVERSATION_QUERY: &[(&str, &str, &str)] = &[
    ("status", "ConversationStatus", "open, escalated or closed"),
    ("needs_human", "boolean", "only those waiting for a person"),
    (
        "owner_user_id",
        "uuid",
        "only those this rep has taken over",
    ),
    (
        "channel",
        "Channel",
        "whatsapp, sms, email or chat (`wasit chat`)",
    ),
    ("limit", "integer", "page size, 1–200 (default 50)"),
    ("cursor", "string", "the next_cursor of the previous page"),
];

const NOTIFICATION_QUERY: &[(&str, &str, &str)] = &[
    ("unread", "boolean", "only unread ones"),
    ("limit", "integer", "page size, 1–200 (default 50)"),
    ("cursor", "string", "the next_cursor of the previous page"),
];

const AUDIT_QUERY: &[(&str, &str, &str)] = &[
    (
        "entity",
        "string",
        "lead, contact, deal, meeting, proposal, working_hours",
    ),
    ("entity_id", "uuid", "one record's history"),
    ("actor_user_id", "uuid", "one user's changes"),
    ("limit", "integer", "page size, 1–200 (default 50)"),
    ("cursor", "string", "the next_cursor of the previous page"),
];

const COMMISSION_QUERY: &[(&str, &str, &str)] = &[
    ("period", "date", "the first day of a month"),
    ("limit", "integer", "page size, 1–200 (default 50)"),
    ("cursor", "string", "the next_cursor of the previous page"),
];

const PAYOUT_QUERY: &[(&str, &str, &str)] =
    &[("period", "date", "the first day of a month (required)")];

const APPROVAL_QUERY: &[(&str, &str, &str)] = &[
    ("status", "ApprovalStatus", "only approvals in this status"),
    ("limit", "integer", "page size, 1–200 (default 50)"),
    ("cursor", "string", "the next_cursor of the previous page"),
];

const CLAIM_QUERY: &[(&str, &str, &str)] = &[
    ("status", "ClaimStatus", "only claims in this status"),
    ("limit", "integer", "page size, 1–200 (default 50)"),
    ("cursor", "string", "the next_cursor of the previous page"),
];

const DISPUTE_QUERY: &[(&str, &str, &str)] = &[
    ("status", "DisputeStatus", "open, under_review or resolved"),
    (
        "subject_kind",
        "SubjectKind",
        "commission or guarantee_claim",
    ),
    ("limit", "integer", "at most this many, 1–200 (default 50)"),
];

const LEAD_QUERY: &[(&str, &str, &str)] = &[
    ("status", "LeadStatus", "only leads in this status"),
    ("owner_user_id", "uuid", "only leads this user owns"),
    ("source", "LeadSource", "only leads from this source"),
    ("contact_id", "uuid", "only this contact's leads"),
    ("limit", "integer", "page size, 1–200 (default 50)"),
    ("cursor", "string", "the next_cursor of the previous page"),
];

/// Every `/api/v1` route.
pub const CATALOG: &[RouteSpec] = &[
    RouteSpec {
        method: "post",
        path: "/auth/login",
        summary: "Log in with tenant, email and password; answers a bearer token",
        tag: "auth",
        roles: None,
        request: Some("LoginRequest"),
        response: "LoginResponse",
        status: 200,
        query: &[],
        object: None,
        example: Some(
            |_| json!({"tenant": "riyadh-gold", "email": "admin@example.com", "password": "correct horse"}),
        ),
    },
    RouteSpec {
        method: "get",
        path: "/me",
        summary: "The caller: tenant, role and user",
        tag: "users",
        roles: Some(Role::ALL),
        request: None,
        response: "Me",
        status: 200,
        query: &[],
        object: None,
        example: None,
    },
    RouteSpec {
        method: "get",
        path: "/users",
        summary: "List the tenant's users",
        tag: "users",
        roles: Some(Role::ADMINS),
        request: None,
        response: "UserPage",
        status: 200,
        query: PAGE,
        object: None,
        example: None,
    },
    RouteSpec {
        method: "post",
        path: "/users",
        summary: "Create a user",
        tag: "users",
        roles: Some(Role::ADMINS),
        request: Some("CreateUser"),
        response: "User",
        status: 201,
        query: &[],
        object: Some("user"),
        example: Some(
            |_| json!({"email": format!("rep-{}@example.com", uuid::Uuid::new_v4().simple()), "role": "sales_rep", "display_name": "نورة"}),
        ),
    },
    RouteSpec {
        method: "get",
        path: "/users/{id}",
        summary: "One user",
        tag: "users",
        roles: Some(Role::ADMINS),
        request: None,
        response: "User",
        status: 200,
        query: &[],
        object: Some("user"),
        example: None,
    },
    RouteSpec {
        method: "get",
        path: "/contacts",
        summary: "List contacts, newest first; search by name or find by phone, email or BSUID",
        tag: "contacts",
        roles: Some(Role::SALES),
        request: None,
        response: "ContactPage",
        status: 200,
        query: CONTACT_QUERY,
        object: None,
        example: None,
    },
    RouteSpec {
        method: "post",
        path: "/contacts",
        summary: "Create a contact with its identities (409 when another contact has one of them)",
        tag: "contacts",
        roles: Some(Role::SALES),
        request: Some("CreateContact"),
        response: "Contact",
        status: 201,
        query: &[],
        object: Some("contact"),
        example: Some(|_| {
            json!({"display_name": "سارة القحطاني", "locale": "ar-SA", "identities": [
                {"kind": "phone", "value": format!("+9665{}", &uuid::Uuid::new_v4().as_u128().to_string()[..8])}]})
        }),
    },
    RouteSpec {
        method: "get",
        path: "/contacts/{id}",
        summary: "One contact with its identities and consent",
        tag: "contacts",
        roles: Some(Role::SALES),
        request: None,
        response: "Contact",
        status: 200,
        query: &[],
        object: Some("contact"),
        example: None,
    },
    RouteSpec {
        method: "patch",
        path: "/contacts/{id}",
        summary: "Change a contact: name, locale, identities to add, consent per channel (opted_out: never messaged proactively)",
        tag: "contacts",
        roles: Some(Role::SALES),
        request: Some("UpdateContact"),
        response: "Contact",
        status: 200,
        query: &[],
        object: Some("contact"),
        example: Some(
            |_| json!({"locale": "ar", "consent": {"whatsapp": "granted", "sms": "opted_out"}}),
        ),
    },
    RouteSpec {
        method: "get",
        path: "/deals",
        summary: "List deals, newest first",
        tag: "deals",
        roles: Some(Role::SALES),
        request: None,
        response: "DealPage",
        status: 200,
        query: DEAL_QUERY,
        object: None,
        example: None,
    },
    RouteSpec {
        method: "post",
        path: "/deals",
        summary: "Create a deal in an open stage (default: the first); amount in minor units",
        tag: "deals",
        roles: Some(Role::SALES),
        request: Some("CreateDeal"),
        response: "Deal",
        status: 201,
        query: &[],
        object: Some("deal"),
        example: Some(
            |_| json!({"title": "سبائك ذهب ١ كغ", "amount_minor": 1_234_567, "currency": "SAR", "expected_close_date": "2026-12-15"}),
        ),
    },
    RouteSpec {
        method: "get",
        path: "/analytics/llm-usage",
        summary: "Language-model usage per day, agent and model; the tenant's caps and what today and this month used",
        tag: "analytics",
        roles: Some(Role::ADMINS),
        request: None,
        response: "LlmUsage",
        status: 200,
        query: USAGE_QUERY,
        object: None,
        example: None,
    },
    RouteSpec {
        method: "get",
        path: "/settings/llm",
        summary: "The tenant's model choice (for every agent, or per agent) and its daily and monthly caps",
        tag: "analytics",
        roles: Some(Role::ADMINS),
        request: None,
        response: "LlmSettings",
        status: 200,
        query: &[],
        object: None,
        example: None,
    },
    RouteSpec {
        method: "put",
        path: "/settings/llm",
        summary: "Replace the model choice and caps; at a cap agents stop calling the model and hand conversations to reps",
        tag: "analytics",
        roles: Some(Role::ADMINS),
        request: Some("LlmSettings"),
        response: "LlmSettings",
        status: 200,
        query: &[],
        object: None,
        example: Some(
            |_| json!({"model": "gpt-4o-mini", "agent_models": {"sales": "gpt-4o"}, "daily_tokens": 2_000_000, "monthly_cost_usd": 150.0}),
        ),
    },
    RouteSpec {
        method: "get",
        path: "/deals/forecast",
        summary: "Weighted pipeline of open deals by expected close period and currency",
        tag: "deals",
        roles: Some(Role::SALES),
        request: None,
        response: "Forecast",
        status: 200,
        query: FORECAST_QUERY,
        object: None,
        example: None,
    },
    RouteSpec {
        method: "get",
        path: "/deals/summary",
        summary: "Deals, amounts and weighted amounts per stage and currency",
        tag: "deals",
        roles: Some(Role::SALES),
        request: None,
        response: "PipelineSummary",
        status: 200,
        query: &[],
        object: None,
        example: None,
    },
    RouteSpec {
        method: "get",
        path: "/deals/{id}",
        summary: "One deal",
        tag: "deals",
        roles: Some(Role::SALES),
        request: None,
        response: "Deal",
        status: 200,
        query: &[],
        object: Some("deal"),
        example: None,
    },
    RouteSpec {
        method: "patch",
        path: "/deals/{id}",
        summary: "Change a deal or move it to another stage (history kept); a won or lost deal is closed (409)",
        tag: "deals",
        roles: Some(Role::SALES),
        request: Some("UpdateDeal"),
        response: "Deal",
        status: 200,
        query: &[],
        object: Some("deal"),
        example: Some(|_| json!({"amount_minor": 1_500_000, "expected_close_date": "2027-01-10"})),
    },
    RouteSpec {
        method: "get",
        path: "/pipeline/stages",
        summary: "The tenant's pipeline stages in order, with their probabilities",
        tag: "deals",
        roles: Some(Role::SALES),
        request: None,
        response: "StageList",
        status: 200,
        query: &[],
        object: None,
        example: None,
    },
    RouteSpec {
        method: "get",
        path: "/users/{id}/working-hours",
        summary: "A rep's working hours and their time zone (none set: bookable any time)",
        tag: "meetings",
        roles: Some(Role::SALES),
        request: None,
        response: "WorkingHours",
        status: 200,
        query: &[],
        object: Some("user"),
        example: None,
    },
    RouteSpec {
        method: "put",
        path: "/users/{id}/working-hours",
        summary: "Replace a rep's working hours (ISO weekdays, HH:MM in an IANA time zone)",
        tag: "meetings",
        roles: Some(crate::routes::meetings::HOURS_EDITORS),
        request: Some("SetWorkingHours"),
        response: "WorkingHours",
        status: 200,
        query: &[],
        object: Some("user"),
        example: Some(|_| {
            json!({"time_zone": "Asia/Riyadh", "hours": [
                {"weekday": 7, "starts": "09:00", "ends": "17:00"},
                {"weekday": 1, "starts": "09:00", "ends": "13:00"},
                {"weekday": 1, "starts": "16:00", "ends": "21:00"}]})
        }),
    },
    RouteSpec {
        method: "get",
        path: "/meetings",
        summary: "Meetings starting in a time range (default: the next 90 days), in time order",
        tag: "meetings",
        roles: Some(Role::SALES),
        request: None,
        response: "MeetingPage",
        status: 200,
        query: MEETING_QUERY,
        object: None,
        example: None,
    },
    RouteSpec {
        method: "post",
        path: "/meetings",
        summary: "Book a meeting with a rep (409 when the rep is taken, 422 outside working hours)",
        tag: "meetings",
        roles: Some(Role::SALES),
        request: Some("CreateMeeting"),
        response: "Meeting",
        status: 201,
        query: &[],
        object: Some("meeting"),
        example: Some(|ids| {
            // A fresh slot each time, far in the future: examples never collide.
            let start = 4_102_444_800 + (uuid::Uuid::new_v4().as_u128() % 1_000_000) as i64 * 3_600;
            let at = |t: i64| {
                time::OffsetDateTime::from_unix_timestamp(t)
                    .expect("a valid time")
                    .format(&time::format_description::well_known::Rfc3339)
                    .expect("formats")
            };
            json!({"rep_user_id": id_of(ids, "user"), "title": "عرض الضمان الذهبي",
                   "starts_at": at(start), "ends_at": at(start + 1_800), "location": "فرع العليا"})
        }),
    },
    RouteSpec {
        method: "get",
        path: "/meetings/{id}",
        summary: "One meeting",
        tag: "meetings",
        roles: Some(Role::SALES),
        request: None,
        response: "Meeting",
        status: 200,
        query: &[],
        object: Some("meeting"),
        example: None,
    },
    RouteSpec {
        method: "patch",
        path: "/meetings/{id}",
        summary: "Reschedule, rename or cancel a meeting (a cancelled one is final)",
        tag: "meetings",
        roles: Some(Role::SALES),
        request: Some("UpdateMeeting"),
        response: "Meeting",
        status: 200,
        query: &[],
        object: Some("meeting"),
        example: Some(|_| json!({"location": "عن بعد"})),
    },
    RouteSpec {
        method: "get",
        path: "/meetings/{id}/ics",
        summary: "The meeting as an iCalendar (.ics) file",
        tag: "meetings",
        roles: Some(Role::SALES),
        request: None,
        response: "Ics",
        status: 200,
        query: &[],
        object: Some("meeting"),
        example: None,
    },
    RouteSpec {
        method: "get",
        path: "/articles",
        summary: "The tenant's knowledge articles, newest first (global ones are managed with `wasit kb ingest --global`)",
        tag: "knowledge",
        roles: Some(crate::routes::articles::READERS),
        request: None,
        response: "ArticlePage",
        status: 200,
        query: PAGE,
        object: None,
        example: None,
    },
    RouteSpec {
        method: "post",
        path: "/articles",
        summary: "Write a knowledge article: stored, chunked and indexed for the agents' search",
        tag: "knowledge",
        roles: Some(crate::routes::articles::WRITERS),
        request: Some("WriteArticle"),
        response: "Article",
        status: 201,
        query: &[],
        object: Some("article"),
        example: Some(|_| {
            json!({"title": "سياسة الاسترجاع", "language": "ar", "tags": ["استرجاع", "returns"],
                   "body": "## الاسترجاع\nتُسترجع السبائك غير المفتوحة خلال ١٤ يوماً مع الفاتورة."})
        }),
    },
    RouteSpec {
        method: "get",
        path: "/articles/search",
        summary: "The passages agents would find for a question: the tenant's own and the global articles, ranked",
        tag: "knowledge",
        roles: Some(crate::routes::articles::READERS),
        request: None,
        response: "SearchResults",
        status: 200,
        query: &[
            ("q", "string", "the question, in any language"),
            ("limit", "integer", "results, 1–50 (default 8)"),
        ],
        object: None,
        example: None,
    },
    RouteSpec {
        method: "get",
        path: "/articles/{id}",
        summary: "One knowledge article",
        tag: "knowledge",
        roles: Some(crate::routes::articles::READERS),
        request: None,
        response: "Article",
        status: 200,
        query: &[],
        object: Some("article"),
        example: None,
    },
    RouteSpec {
        method: "put",
        path: "/articles/{id}",
        summary: "Replace an article written through the API (ingested ones belong to their files: 409)",
        tag: "knowledge",
        roles: Some(crate::routes::articles::WRITERS),
        request: Some("WriteArticle"),
        response: "Article",
        status: 200,
        query: &[],
        object: Some("article"),
        example: Some(|_| {
            json!({"title": "سياسة الاسترجاع والاستبدال", "language": "ar", "tags": ["استرجاع"],
                   "body": "## الاسترجاع\nتُسترجع السبائك غير المفتوحة خلال ١٤ يوماً.\n\n## الاستبدال\nيُستبدل المشغول خلال ٧ أيام."})
        }),
    },
    RouteSpec {
        method: "delete",
        path: "/articles/{id}",
        summary: "Delete an article written through the API; the agents stop finding it",
        tag: "knowledge",
        roles: Some(crate::routes::articles::WRITERS),
        request: None,
        response: "Empty",
        status: 204,
        query: &[],
        object: Some("article"),
        example: None,
    },
    RouteSpec {
        method: "get",
        path: "/proposals",
        summary: "List proposals, newest first",
        tag: "proposals",
        roles: Some(Role::SALES),
        request: None,
        response: "ProposalPage",
        status: 200,
        query: PROPOSAL_QUERY,
        object: None,
        example: None,
    },
    RouteSpec {
        method: "post",
        path: "/proposals",
        summary: "Write a proposal (a draft) on a deal",
        tag: "proposals",
        roles: Some(Role::SALES),
        request: Some("CreateProposal"),
        response: "Proposal",
        status: 201,
        query: &[],
        object: Some("proposal"),
        example: Some(|ids| {
            json!({"deal_id": id_of(ids, "deal"), "title": "عرض سبائك الذهب",
                   "content": "## العرض\nسبيكة ١ كغ عيار ٢٤ مع الضمان الذهبي.", "amount_minor": 1_234_567, "currency": "SAR"})
        }),
    },
    RouteSpec {
        method: "get",
        path: "/proposals/{id}",
        summary: "One proposal",
        tag: "proposals",
        roles: Some(Role::SALES),
        request: None,
        response: "Proposal",
        status: 200,
        query: &[],
        object: Some("proposal"),
        example: None,
    },
    RouteSpec {
        method: "patch",
        path: "/proposals/{id}",
        summary: "Edit a draft, or move it: draft → sent → accepted | declined",
        tag: "proposals",
        roles: Some(Role::SALES),
        request: Some("UpdateProposal"),
        response: "Proposal",
        status: 200,
        query: &[],
        object: Some("proposal"),
        example: Some(|_| json!({"title": "عرض سبائك الذهب (معدّل)"})),
    },
    RouteSpec {
        method: "get",
        path: "/conversations",
        summary: "Conversations, most recently active first; filter the escalated ones, a rep's, a channel's",
        tag: "conversations",
        roles: Some(Role::SALES),
        request: None,
        response: "ConversationPage",
        status: 200,
        query: CONVERSATION_QUERY,
        object: None,
        example: None,
    },
    RouteSpec {
        method: "get",
        path: "/conversations/{id}",
        summary: "One conversation",
        tag: "conversations",
        roles: Some(Role::SALES),
        request: None,
        response: "Conversation",
        status: 200,
        query: &[],
        object: Some("conversation"),
        example: None,
    },
    RouteSpec {
        method: "get",
        path: "/conversations/{id}/messages",
        summary: "The conversation's messages, oldest first (cursor: the last seq seen)",
        tag: "conversations",
        roles: Some(Role::SALES),
        request: None,
        response: "MessagePage",
        status: 200,
        query: PAGE,
        object: Some("conversation"),
        example: None,
    },
    RouteSpec {
        method: "get",
        path: "/conversations/{id}/turns",
        summary: "The audit of the conversation's AI turns: agent, prompt version, model, tokens, latency, tool calls",
        tag: "conversations",
        roles: Some(crate::routes::conversations::TURN_READERS),
        request: None,
        response: "TurnPage",
        status: 200,
        query: PAGE,
        object: Some("conversation"),
        example: None,
    },
    RouteSpec {
        method: "post",
        path: "/conversations/{id}/hand-back",
        summary: "Give an escalated conversation back to the agents: the agent that escalated it answers the next message",
        tag: "conversations",
        roles: Some(Role::SALES),
        request: None,
        response: "Conversation",
        status: 200,
        query: &[],
        object: Some("conversation"),
        example: None,
    },
    RouteSpec {
        method: "get",
        path: "/notifications",
        summary: "The caller's notifications, newest first (unread=true for the unread ones)",
        tag: "notifications",
        roles: Some(Role::ALL),
        request: None,
        response: "NotificationPage",
        status: 200,
        query: NOTIFICATION_QUERY,
        object: None,
        example: None,
    },
    RouteSpec {
        method: "patch",
        path: "/notifications/{id}",
        summary: "Mark one of the caller's notifications read or unread",
        tag: "notifications",
        roles: Some(Role::ALL),
        request: Some("MarkNotification"),
        response: "Notification",
        status: 200,
        query: &[],
        object: Some("notification"),
        example: Some(|_| json!({"read": true})),
    },
    RouteSpec {
        method: "get",
        path: "/audit-log",
        summary: "Who changed what: every change made through the API, with the record before and after",
        tag: "notifications",
        roles: Some(crate::routes::notifications::AUDITORS),
        request: None,
        response: "AuditPage",
        status: 200,
        query: AUDIT_QUERY,
        object: None,
        example: None,
    },
    RouteSpec {
        method: "get",
        path: "/affiliates",
        summary: "Affiliates, newest first",
        tag: "affiliates",
        roles: Some(crate::routes::affiliates::ROLES),
        request: None,
        response: "AffiliatePage",
        status: 200,
        query: PAGE,
        object: None,
        example: None,
    },
    RouteSpec {
        method: "post",
        path: "/affiliates",
        summary: "Record an affiliate's application (a referral code is generated unless given)",
        tag: "affiliates",
        roles: Some(crate::routes::affiliates::ROLES),
        request: Some("CreateAffiliate"),
        response: "Affiliate",
        status: 201,
        query: &[],
        object: Some("affiliate"),
        example: Some(|_| json!({"display_name": "مجوهرات الخليج"})),
    },
    RouteSpec {
        method: "get",
        path: "/affiliates/{id}",
        summary: "One affiliate",
        tag: "affiliates",
        roles: Some(crate::routes::affiliates::ROLES),
        request: None,
        response: "Affiliate",
        status: 200,
        query: &[],
        object: Some("affiliate"),
        example: None,
    },
    RouteSpec {
        method: "patch",
        path: "/affiliates/{id}",
        summary: "Move an affiliate (applied → approved → onboarding → active ⇄ suspended; applied → rejected) or mark onboarding steps done",
        tag: "affiliates",
        roles: Some(crate::routes::affiliates::ROLES),
        request: Some("UpdateAffiliate"),
        response: "Affiliate",
        status: 200,
        query: &[],
        object: Some("affiliate"),
        example: Some(|_| json!({"steps_done": ["contract"]})),
    },
    RouteSpec {
        method: "get",
        path: "/commission-rules",
        summary: "The tenant's commission rules",
        tag: "commissions",
        roles: Some(crate::routes::affiliates::ROLES),
        request: None,
        response: "RuleList",
        status: 200,
        query: &[],
        object: None,
        example: None,
    },
    RouteSpec {
        method: "post",
        path: "/commission-rules",
        summary: "Add a commission rule: for affiliates (all, or one) or deal owners, in one currency, with marginal tiers in basis points",
        tag: "commissions",
        roles: Some(crate::routes::affiliates::ROLES),
        request: Some("CreateRule"),
        response: "Rule",
        status: 201,
        query: &[],
        object: Some("rule"),
        example: Some(|_| {
            json!({"name": "عمولة الشركاء", "beneficiary": "affiliate", "currency": "SAR",
                                  "tiers": [{"from_minor": 0, "rate_bps": 500}, {"from_minor": 10_000_000, "rate_bps": 700}]})
        }),
    },
    RouteSpec {
        method: "get",
        path: "/commissions",
        summary: "Commissions earned by won deals, by period",
        tag: "commissions",
        roles: Some(crate::routes::affiliates::ROLES),
        request: None,
        response: "CommissionPage",
        status: 200,
        query: COMMISSION_QUERY,
        object: None,
        example: None,
    },
    RouteSpec {
        method: "get",
        path: "/commissions/payouts",
        summary: "What each affiliate and rep is owed for a month, per currency",
        tag: "commissions",
        roles: Some(crate::routes::affiliates::ROLES),
        request: None,
        response: "PayoutList",
        status: 200,
        query: PAYOUT_QUERY,
        object: None,
        example: None,
    },
    RouteSpec {
        method: "get",
        path: "/guarantee-claims",
        summary: "Gold-guarantee claims, newest first",
        tag: "guarantees",
        roles: Some(Role::SALES),
        request: None,
        response: "ClaimPage",
        status: 200,
        query: CLAIM_QUERY,
        object: None,
        example: None,
    },
    RouteSpec {
        method: "post",
        path: "/guarantee-claims",
        summary: "Record a customer's gold-guarantee claim",
        tag: "guarantees",
        roles: Some(Role::SALES),
        request: Some("CreateClaim"),
        response: "Claim",
        status: 201,
        query: &[],
        object: Some("claim"),
        example: Some(
            |_| json!({"description": "السبيكة وصلت بوزن أقل من المذكور في الفاتورة", "claimed_minor": 250_000, "currency": "SAR"}),
        ),
    },
    RouteSpec {
        method: "get",
        path: "/approvals",
        summary: "Money-moving actions agents asked for (refunds), newest first; status=pending for those waiting",
        tag: "guarantees",
        roles: Some(crate::routes::approvals::ROLES),
        request: None,
        response: "ApprovalPage",
        status: 200,
        query: APPROVAL_QUERY,
        object: None,
        example: None,
    },
    RouteSpec {
        method: "get",
        path: "/approvals/{id}",
        summary: "One approval: what the agent asked for, why, and the decision",
        tag: "guarantees",
        roles: Some(crate::routes::approvals::ROLES),
        request: None,
        response: "Approval",
        status: 200,
        query: &[],
        object: Some("approval"),
        example: None,
    },
    RouteSpec {
        method: "post",
        path: "/approvals/{id}/decision",
        summary: "Approve or reject a pending approval; approving a refund approves its claim for that amount, recorded with the deciding user",
        tag: "guarantees",
        roles: Some(crate::routes::approvals::ROLES),
        request: Some("ApprovalDecision"),
        response: "Approval",
        status: 200,
        query: &[],
        object: Some("approval"),
        example: Some(|_| json!({"approve": false, "note": "يحتاج إلى فحص إضافي"})),
    },
    RouteSpec {
        method: "get",
        path: "/guarantee-claims/{id}",
        summary: "One claim with its evidence and decision",
        tag: "guarantees",
        roles: Some(Role::SALES),
        request: None,
        response: "Claim",
        status: 200,
        query: &[],
        object: Some("claim"),
        example: None,
    },
    RouteSpec {
        method: "patch",
        path: "/guarantee-claims/{id}",
        summary: "Review a claim: submitted → under_review → approved (with approved_minor, recorded with the approving user) | rejected",
        tag: "guarantees",
        roles: Some(crate::routes::guarantees::REVIEWERS),
        request: Some("ReviewClaim"),
        response: "Claim",
        status: 200,
        query: &[],
        object: Some("claim"),
        example: Some(|_| json!({"status": "under_review"})),
    },
    RouteSpec {
        method: "post",
        path: "/guarantee-claims/{id}/evidence",
        summary: "Attach evidence (file metadata and SHA-256) to an undecided claim",
        tag: "guarantees",
        roles: Some(Role::SALES),
        request: Some("Evidence"),
        response: "Claim",
        status: 201,
        query: &[],
        object: Some("claim"),
        example: Some(|_| {
            json!({"file_name": "فاتورة.pdf", "content_type": "application/pdf", "size_bytes": 48213,
                                  "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"})
        }),
    },
    RouteSpec {
        method: "post",
        path: "/guarantee-claims/{id}/refund",
        summary: "Refund an approved claim, once, up to the approved amount; recorded with who approved and who refunded",
        tag: "guarantees",
        roles: Some(crate::routes::guarantees::REVIEWERS),
        request: Some("RefundRequest"),
        response: "Refund",
        status: 201,
        query: &[],
        object: Some("claim"),
        example: Some(|_| json!({"amount_minor": 100_000})),
    },
    RouteSpec {
        method: "get",
        path: "/platform/tenants",
        summary: "Every tenant with its counts (superadmins; read across tenants as wasit_platform, each call audited)",
        tag: "platform",
        roles: Some(&[Role::Superadmin]),
        request: None,
        response: "PlatformTenants",
        status: 200,
        query: &[],
        object: None,
        example: None,
    },
    RouteSpec {
        method: "get",
        path: "/disputes",
        summary: "Disputes over commissions and guarantee claims, newest first",
        tag: "disputes",
        roles: Some(crate::routes::disputes::RESOLVERS),
        request: None,
        response: "DisputePage",
        status: 200,
        query: DISPUTE_QUERY,
        object: None,
        example: None,
    },
    RouteSpec {
        method: "post",
        path: "/disputes",
        summary: "Dispute a commission or a guarantee claim (affiliates too)",
        tag: "disputes",
        roles: Some(crate::routes::disputes::RAISERS),
        request: Some("CreateDispute"),
        response: "Dispute",
        status: 201,
        query: &[],
        object: Some("dispute"),
        example: Some(|ids| {
            json!({"subject_kind": "guarantee_claim", "subject_id": id_of(ids, "claim"),
                                    "reason": "المبلغ المعتمد أقل من الخسارة الفعلية"})
        }),
    },
    RouteSpec {
        method: "get",
        path: "/disputes/{id}",
        summary: "One dispute",
        tag: "disputes",
        roles: Some(crate::routes::disputes::RESOLVERS),
        request: None,
        response: "Dispute",
        status: 200,
        query: &[],
        object: Some("dispute"),
        example: None,
    },
    RouteSpec {
        method: "patch",
        path: "/disputes/{id}",
        summary: "Move a dispute: open → under_review → resolved (with a resolution)",
        tag: "disputes",
        roles: Some(crate::routes::disputes::RESOLVERS),
        request: Some("UpdateDispute"),
        response: "Dispute",
        status: 200,
        query: &[],
        object: Some("dispute"),
        example: Some(|_| json!({"status": "under_review"})),
    },
    RouteSpec {
        method: "get",
        path: "/leads",
        summary: "List leads, newest first, with filters",
        tag: "leads",
        roles: Some(Role::SALES),
        request: None,
        response: "LeadPage",
        status: 200,
        query: LEAD_QUERY,
        object: None,
        example: None,
    },
    RouteSpec {
        method: "post",
        path: "/leads",
        summary: "Create a lead (status new)",
        tag: "leads",
        roles: Some(Role::SALES),
        request: Some("CreateLead"),
        response: "Lead",
        status: 201,
        query: &[],
        object: Some("lead"),
        example: Some(
            |_| json!({"source": "whatsapp", "score": 40, "score_reasons": [{"reason": "سأل عن سعر السبائك", "points": 40}], "sector": "retail", "territory": "الرياض"}),
        ),
    },
    RouteSpec {
        method: "get",
        path: "/leads/{id}",
        summary: "One lead",
        tag: "leads",
        roles: Some(Role::SALES),
        request: None,
        response: "Lead",
        status: 200,
        query: &[],
        object: Some("lead"),
        example: None,
    },
    RouteSpec {
        method: "patch",
        path: "/leads/{id}",
        summary: "Change a lead: status (new → contacted → qualified → converted, or disqualified with a reason), score, owner, qualification",
        tag: "leads",
        roles: Some(Role::SALES),
        request: Some("UpdateLead"),
        response: "Lead",
        status: 200,
        query: &[],
        object: Some("lead"),
        example: Some(|_| json!({"score": 55, "qualification": {"budget_sar": 50000}})),
    },
    RouteSpec {
        method: "post",
        path: "/leads/{id}/assign",
        summary: "Assign the lead to the matching rep (sector, territory) with the fewest open leads (409 when none matches)",
        tag: "leads",
        roles: Some(Role::SALES),
        request: None,
        response: "Lead",
        status: 200,
        query: &[],
        object: Some("lead"),
        example: None,
    },
    RouteSpec {
        method: "get",
        path: "/users/{id}/sales-profile",
        summary: "The sectors and territories a rep takes leads for (empty: any)",
        tag: "leads",
        roles: Some(Role::SALES),
        request: None,
        response: "SalesProfile",
        status: 200,
        query: &[],
        object: Some("user"),
        example: None,
    },
    RouteSpec {
        method: "put",
        path: "/users/{id}/sales-profile",
        summary: "Set the sectors and territories a rep takes leads for, and whether they take new leads",
        tag: "leads",
        roles: Some(crate::routes::meetings::HOURS_EDITORS),
        request: Some("SalesProfile"),
        response: "SalesProfile",
        status: 200,
        query: &[],
        object: Some("user"),
        example: Some(
            |_| json!({"sectors": ["retail"], "territories": ["الرياض"], "accepts_leads": true, "max_discount_bps": 300}),
        ),
    },
    RouteSpec {
        method: "post",
        path: "/pipeline/stages",
        summary: "Add a pipeline stage (admins, managers): name, position, probability, kind (open, won, lost)",
        tag: "deals",
        roles: Some(crate::routes::meetings::HOURS_EDITORS),
        request: Some("CreateStage"),
        response: "Stage",
        status: 201,
        query: &[],
        object: Some("stage"),
        example: Some(|_| {
            let n = 100 + (uuid::Uuid::new_v4().as_u128() % 1_000_000) as i64;
            json!({"name": format!("مرحلة {n}"), "position": n, "probability": 55})
        }),
    },
    RouteSpec {
        method: "patch",
        path: "/pipeline/stages/{id}",
        summary: "Rename, move or reweight a stage; forecasts use the new probability at once",
        tag: "deals",
        roles: Some(crate::routes::meetings::HOURS_EDITORS),
        request: Some("UpdateStage"),
        response: "Stage",
        status: 200,
        query: &[],
        object: Some("stage"),
        example: Some(|_| json!({"probability": 60})),
    },
    RouteSpec {
        method: "patch",
        path: "/commission-rules/{id}",
        summary: "Rename or (de)activate a commission rule",
        tag: "commissions",
        roles: Some(crate::routes::affiliates::ROLES),
        request: Some("UpdateRule"),
        response: "Rule",
        status: 200,
        query: &[],
        object: Some("rule"),
        example: Some(|_| json!({"active": true})),
    },
    RouteSpec {
        method: "patch",
        path: "/commissions/{id}",
        summary: "Move a commission: pending → approved → paid",
        tag: "commissions",
        roles: Some(crate::routes::affiliates::ROLES),
        request: Some("UpdateCommission"),
        response: "Commission",
        status: 200,
        query: &[],
        object: Some("commission"),
        example: Some(|_| json!({"status": "approved"})),
    },
];

fn enum_schema(values: &[&str]) -> Value {
    json!({"type": "string", "enum": values})
}

fn roles() -> Vec<&'static str> {
    Role::ALL.iter().map(|r| r.as_str()).collect()
}

fn lead_statuses() -> Vec<&'static str> {
    crate::repo::leads::LeadStatus::ALL
        .iter()
        .map(|s| s.as_str())
        .collect()
}

fn lead_sources() -> Vec<&'static str> {
    crate::repo::leads::LeadSource::ALL
        .iter()
        .map(|s| s.as_str())
        .collect()
}

fn components() -> Value {
    let uuid = json!({"type": "string", "format": "uuid"});
    let time = json!({"type": "string", "format": "date-time"});
    let nullable_uuid = json!({"type": ["string", "null"], "format": "uuid"});
    let nullable_text = json!({"type": ["string", "null"]});
    let page = |item: &str| {
        json!({"type": "object", "required": ["items", "next_cursor"], "properties": {
            "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{item}")}},
            "next_cursor": {"type": ["string", "null"], "description": "pass as ?cursor= for the next page; null on the last"}}})
    };
    let score_reason = json!({"type": "object", "required": ["reason", "points"], "additionalProperties": false,
        "properties": {"reason": {"type": "string"}, "points": {"type": "integer"}}});
    let mut schemas = serde_json::Map::new();
    let part = json!({

            "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
            "Role": enum_schema(&roles()),
            "LeadStatus": enum_schema(&lead_statuses()),
            "LeadSource": enum_schema(&lead_sources()),
            "LoginRequest": {"type": "object", "additionalProperties": false, "required": ["tenant", "email", "password"],
                "properties": {"tenant": {"type": "string"}, "email": {"type": "string", "format": "email"}, "password": {"type": "string"}}},
            "LoginResponse": {"type": "object", "properties": {"token": {"type": "string"}, "token_type": {"const": "Bearer"},
                "expires_in": {"type": "integer"}, "role": {"$ref": "#/components/schemas/Role"}}},
            "Tenant": {"type": "object", "properties": {"id": uuid, "slug": {"type": "string"}, "name": {"type": "string"}}},
            "User": {"type": "object", "properties": {"id": uuid, "email": {"type": "string"}, "display_name": nullable_text,
                "role": {"$ref": "#/components/schemas/Role"}, "disabled": {"type": "boolean"}, "created_at": time}},
            "Me": {"type": "object", "properties": {"tenant": {"$ref": "#/components/schemas/Tenant"},
                "role": {"$ref": "#/components/schemas/Role"}, "subject": {"type": "string"},
                "user": {"oneOf": [{"$ref": "#/components/schemas/User"}, {"type": "null"}]}}},
            "CreateUser": {"type": "object", "additionalProperties": false, "required": ["email", "role"],
                "properties": {"email": {"type": "string", "format": "email"}, "role": {"$ref": "#/components/schemas/Role"},
                    "display_name": {"type": "string"}, "password": {"type": "string", "minLength": 8}}},
            "UserPage": page("User"),
            "ScoreReason": score_reason,
            "Lead": {"type": "object", "properties": {
                "id": uuid, "contact_id": nullable_uuid, "source": {"$ref": "#/components/schemas/LeadSource"},
                "status": {"$ref": "#/components/schemas/LeadStatus"},
                "score": {"type": ["integer", "null"], "minimum": 0, "maximum": 100},
                "score_reasons": {"type": "array", "items": {"$ref": "#/components/schemas/ScoreReason"}},
                "qualification": {"type": "object"}, "sector": nullable_text, "territory": nullable_text,
                "owner_user_id": nullable_uuid, "affiliate_id": nullable_uuid, "disqualified_reason": nullable_text,
                "created_at": time, "updated_at": time}},
            "CreateLead": {"type": "object", "additionalProperties": false, "properties": {
                "contact_id": uuid, "source": {"$ref": "#/components/schemas/LeadSource"},
                "score": {"type": "integer", "minimum": 0, "maximum": 100},
                "score_reasons": {"type": "array", "items": {"$ref": "#/components/schemas/ScoreReason"}},
                "qualification": {"type": "object"},
                "sector": {"type": "string", "minLength": 1, "maxLength": 100},
                "territory": {"type": "string", "minLength": 1, "maxLength": 100},
                "owner_user_id": uuid, "referral_code": {"type": "string", "description": "an active affiliate's code: the lead is attributed to them"}}},
            "UpdateLead": {"type": "object", "additionalProperties": false,
                "description": "Absent fields stay as they are; null clears a nullable field.",
                "properties": {
                "status": {"$ref": "#/components/schemas/LeadStatus"},
                "score": {"type": ["integer", "null"], "minimum": 0, "maximum": 100},
                "score_reasons": {"type": "array", "items": {"$ref": "#/components/schemas/ScoreReason"}},
                "qualification": {"type": "object"},
                "sector": {"type": ["string", "null"], "minLength": 1, "maxLength": 100},
                "territory": {"type": ["string", "null"], "minLength": 1, "maxLength": 100},
                "owner_user_id": nullable_uuid, "contact_id": nullable_uuid,
                "disqualified_reason": {"type": "string", "maxLength": 1000, "description": "required when status becomes disqualified"}}},
            "LeadPage": page("Lead")
    });
    if let Value::Object(map) = part {
        schemas.extend(map);
    }
    let part = json!({
            "Identity": {"type": "object", "additionalProperties": false, "required": ["kind", "value"], "properties": {
                "kind": {"type": "string", "enum": ["phone", "whatsapp_bsuid", "email", "chat"], "description": "chat: a `wasit chat` contact's name"},
                "value": {"type": "string", "description": "phones are stored as + and digits, emails lowercased"}}},
            "ConsentStatus": {"type": "string", "enum": ["granted", "opted_out"]},
            "Consent": {"type": "object", "properties": {"status": {"$ref": "#/components/schemas/ConsentStatus"},
                "source": {"type": "string"}, "updated_at": time}},
            "Contact": {"type": "object", "properties": {
                "id": uuid, "display_name": nullable_text, "locale": nullable_text,
                "identities": {"type": "array", "items": {"$ref": "#/components/schemas/Identity"}},
                "consent": {"type": "object", "description": "by channel (whatsapp, sms, email); absent: none recorded",
                    "additionalProperties": {"$ref": "#/components/schemas/Consent"}},
                "created_at": time, "updated_at": time}},
            "CreateContact": {"type": "object", "additionalProperties": false, "properties": {
                "display_name": {"type": "string", "minLength": 1, "maxLength": 200},
                "locale": {"type": "string", "maxLength": 35},
                "identities": {"type": "array", "items": {"$ref": "#/components/schemas/Identity"}}}},
            "UpdateContact": {"type": "object", "additionalProperties": false,
                "description": "Absent fields stay as they are; null clears a nullable field.", "properties": {
                "display_name": {"type": ["string", "null"], "minLength": 1, "maxLength": 200},
                "locale": {"type": ["string", "null"], "maxLength": 35},
                "add_identities": {"type": "array", "items": {"$ref": "#/components/schemas/Identity"}},
                "consent": {"type": "object", "propertyNames": {"enum": ["whatsapp", "sms", "email"]},
                    "additionalProperties": {"$ref": "#/components/schemas/ConsentStatus"}}}},
            "ContactPage": page("Contact")
    });
    if let Value::Object(map) = part {
        schemas.extend(map);
    }
    let part = json!({
            "Period": {"type": "string", "enum": ["month", "quarter"]},
            "Money": {"type": "integer", "minimum": 0, "description": "whole minor units of the currency (halalas for SAR): 1234567 is 12,345.67"},
            "Stage": {"type": "object", "properties": {"id": uuid, "name": {"type": "string"}, "position": {"type": "integer"},
                "probability": {"type": "integer", "minimum": 0, "maximum": 100}, "kind": {"type": "string", "enum": ["open", "won", "lost"]}}},
            "StageList": {"type": "object", "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Stage"}}}},
            "Deal": {"type": "object", "properties": {
                "id": uuid, "title": {"type": "string"}, "lead_id": nullable_uuid, "contact_id": nullable_uuid, "stage_id": uuid,
                "amount_minor": {"$ref": "#/components/schemas/Money"}, "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                "expected_close_date": {"type": ["string", "null"], "format": "date"}, "owner_user_id": nullable_uuid,
                "win_probability": {"type": ["integer", "null"], "minimum": 0, "maximum": 100, "description": "the deal coach's estimate"},
                "next_step": {"type": ["string", "null"], "description": "the next step the deal coach recommends"},
                "closed_at": {"type": ["string", "null"], "format": "date-time"}, "created_at": time, "updated_at": time}},
            "CreateDeal": {"type": "object", "additionalProperties": false, "required": ["title", "amount_minor", "currency"], "properties": {
                "title": {"type": "string", "minLength": 1, "maxLength": 200}, "amount_minor": {"$ref": "#/components/schemas/Money"},
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$"}, "stage_id": uuid, "lead_id": uuid, "contact_id": uuid,
                "expected_close_date": {"type": "string", "format": "date"}, "owner_user_id": uuid, "affiliate_id": uuid}},
            "UpdateDeal": {"type": "object", "additionalProperties": false,
                "description": "Absent fields stay as they are; null clears a nullable field.", "properties": {
                "title": {"type": "string", "minLength": 1, "maxLength": 200}, "amount_minor": {"$ref": "#/components/schemas/Money"},
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$"}, "stage_id": uuid, "lead_id": nullable_uuid,
                "contact_id": nullable_uuid, "expected_close_date": {"type": ["string", "null"], "format": "date"},
                "owner_user_id": nullable_uuid, "affiliate_id": nullable_uuid}},
            "DealPage": page("Deal"),
            "Hours": {"type": "object", "additionalProperties": false, "required": ["weekday", "starts", "ends"], "properties": {
                "weekday": {"type": "integer", "minimum": 1, "maximum": 7, "description": "ISO: 1 Monday … 7 Sunday"},
                "starts": {"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$"}, "ends": {"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$"}}},
            "WorkingHours": {"type": "object", "properties": {"user_id": uuid, "time_zone": nullable_text,
                "hours": {"type": "array", "items": {"$ref": "#/components/schemas/Hours"}}}},
            "SetWorkingHours": {"type": "object", "additionalProperties": false, "required": ["time_zone", "hours"], "properties": {
                "time_zone": {"type": "string", "description": "IANA name, e.g. Asia/Riyadh"},
                "hours": {"type": "array", "items": {"$ref": "#/components/schemas/Hours"}}}},
            "Meeting": {"type": "object", "properties": {"id": uuid, "rep_user_id": uuid, "contact_id": nullable_uuid,
                "lead_id": nullable_uuid, "deal_id": nullable_uuid, "title": {"type": "string"}, "location": nullable_text,
                "starts_at": time, "ends_at": time, "status": {"type": "string", "enum": ["scheduled", "cancelled"]},
                "sequence": {"type": "integer"}, "created_at": time, "updated_at": time}},
            "MeetingPage": page("Meeting"),
            "CreateMeeting": {"type": "object", "additionalProperties": false, "required": ["rep_user_id", "title", "starts_at", "ends_at"],
                "properties": {"rep_user_id": uuid, "title": {"type": "string", "minLength": 1, "maxLength": 200},
                "starts_at": time, "ends_at": time, "location": {"type": "string", "maxLength": 500},
                "contact_id": uuid, "lead_id": uuid, "deal_id": uuid}},
            "UpdateMeeting": {"type": "object", "additionalProperties": false, "properties": {
                "title": {"type": "string", "minLength": 1, "maxLength": 200}, "location": nullable_text,
                "starts_at": time, "ends_at": time, "status": {"type": "string", "enum": ["scheduled", "cancelled"]}}},
            "Ics": {"type": "string", "contentMediaType": "text/calendar"},
            "ProposalStatus": {"type": "string", "enum": ["draft", "sent", "accepted", "declined"]},
            "Proposal": {"type": "object", "properties": {"id": uuid, "deal_id": uuid, "title": {"type": "string"},
                "content": {"type": "string", "description": "Markdown"}, "amount_minor": {"type": ["integer", "null"]},
                "currency": nullable_text, "status": {"$ref": "#/components/schemas/ProposalStatus"},
                "author_user_id": nullable_uuid, "author_agent": nullable_text,
                "discount_bps": {"type": ["integer", "null"], "description": "the discount in basis points (500 = 5 %); beyond the owner's limit it waits for an approval before sending"},
                "sent_at": {"type": ["string", "null"], "format": "date-time"},
                "decided_at": {"type": ["string", "null"], "format": "date-time"}, "created_at": time, "updated_at": time}},
            "CreateProposal": {"type": "object", "additionalProperties": false, "required": ["deal_id", "title", "content"], "properties": {
                "deal_id": uuid, "title": {"type": "string", "minLength": 1, "maxLength": 200}, "content": {"type": "string"},
                "amount_minor": {"$ref": "#/components/schemas/Money"}, "currency": {"type": "string", "pattern": "^[A-Z]{3}$"}}},
            "UpdateProposal": {"type": "object", "additionalProperties": false, "properties": {
                "title": {"type": "string", "minLength": 1, "maxLength": 200}, "content": {"type": "string"},
                "amount_minor": {"type": ["integer", "null"], "minimum": 0}, "currency": {"type": ["string", "null"], "pattern": "^[A-Z]{3}$"},
                "status": {"$ref": "#/components/schemas/ProposalStatus"}}},
            "ProposalPage": page("Proposal"),
            "Article": {"type": "object", "properties": {"id": uuid,
                "source": {"type": "string", "description": "api:<id>, or the file's path for ingested articles"},
                "title": {"type": "string"}, "language": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}},
                "sector": nullable_text, "body": {"type": "string", "description": "Markdown"},
                "content_hash": {"type": "string", "description": "SHA-256, hex"}, "chunks": {"type": "integer"},
                "indexed": {"type": "boolean", "description": "whether the vector index holds this version"},
                "created_at": time, "updated_at": time}},
            "WriteArticle": {"type": "object", "additionalProperties": false, "required": ["title", "language", "body"], "properties": {
                "title": {"type": "string", "minLength": 1, "maxLength": 200},
                "language": {"type": "string", "pattern": "^[a-z]{2,3}(-[A-Za-z0-9]{2,4})?$"},
                "tags": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 200}},
                "sector": {"type": ["string", "null"], "maxLength": 200},
                "body": {"type": "string", "minLength": 1, "maxLength": 200_000, "description": "Markdown"}}},
            "ArticlePage": page("Article"),
            "SearchHit": {"type": "object", "properties": {"article_id": uuid, "chunk_id": uuid, "title": {"type": "string"},
                "heading_path": {"type": "array", "items": {"type": "string"}}, "text": {"type": "string"},
                "score": {"type": "number"}, "global": {"type": "boolean", "description": "a global article rather than the tenant's own"}}},
            "SearchResults": {"type": "object", "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/SearchHit"}}}},
            "Empty": {"description": "no body", "type": "null"},
            "ConversationStatus": {"type": "string", "enum": ["open", "escalated", "closed"]},
            "Channel": {"type": "string", "enum": ["whatsapp", "sms", "email", "chat"]},
            "Conversation": {"type": "object", "properties": {"id": uuid, "contact_id": uuid, "contact_name": nullable_text,
                "channel": {"$ref": "#/components/schemas/Channel"}, "status": {"$ref": "#/components/schemas/ConversationStatus"},
                "needs_human": {"type": "boolean"}, "owner_user_id": nullable_uuid, "active_agent": {"type": "string"},
                "turns": {"type": "integer"}, "last_inbound_at": {"type": ["string", "null"], "format": "date-time"},
                "next_follow_up_at": {"type": ["string", "null"], "format": "date-time", "description": "when a scheduled follow-up comes back to the contact, unless they write first"},
                "created_at": time, "updated_at": time}},
            "ConversationPage": page("Conversation"),
            "Message": {"type": "object", "properties": {"id": uuid, "seq": {"type": "integer"},
                "direction": {"type": "string", "enum": ["inbound", "outbound"]}, "channel": {"$ref": "#/components/schemas/Channel"},
                "kind": {"type": "string"}, "body": nullable_text, "status": {"type": "string"}, "error": {},
                "processed_at": {"type": ["string", "null"], "format": "date-time"}, "created_at": time}},
            "MessagePage": page("Message"),
            "Turn": {"type": "object", "properties": {"turn_seq": {"type": "integer"}, "agent": {"type": "string"},
                "prompt_version": {"type": "string"}, "model": {"type": "string"}, "tokens_in": {"type": "integer"},
                "tokens_out": {"type": "integer"}, "latency_ms": {"type": "integer"}, "tool_calls": {"type": "array"},
                "outcome": {"type": "object"}, "created_at": time}},
            "TurnPage": page("Turn"),
            "Notification": {"type": "object", "properties": {"id": uuid, "kind": {"type": "string"}, "title": {"type": "string"},
                "body": nullable_text, "data": {"type": "object"}, "read_at": {"type": ["string", "null"], "format": "date-time"},
                "created_at": time}},
            "NotificationPage": page("Notification"),
            "MarkNotification": {"type": "object", "additionalProperties": false, "required": ["read"],
                "properties": {"read": {"type": "boolean"}}},
            "AuditEntry": {"type": "object", "properties": {"id": uuid, "actor_user_id": nullable_uuid,
                "actor_role": {"$ref": "#/components/schemas/Role"}, "action": {"type": "string"}, "entity": {"type": "string"},
                "entity_id": nullable_uuid, "before": {}, "after": {}, "at": time}},
            "AuditPage": page("AuditEntry"),
            "Affiliate": {"type": "object", "properties": {"id": uuid, "display_name": {"type": "string"}, "user_id": nullable_uuid,
                "contact_id": nullable_uuid, "status": {"type": "string", "enum": ["applied", "approved", "rejected", "onboarding", "active", "suspended"]},
                "referral_code": {"type": "string"}, "onboarding": {"type": "array"}, "created_at": time, "updated_at": time}},
            "AffiliatePage": page("Affiliate"),
            "CreateAffiliate": {"type": "object", "additionalProperties": false, "required": ["display_name"], "properties": {
                "display_name": {"type": "string", "minLength": 1, "maxLength": 200}, "user_id": uuid, "contact_id": uuid,
                "referral_code": {"type": "string", "pattern": "^[A-Za-z0-9]{4,16}$"}}},
            "UpdateAffiliate": {"type": "object", "additionalProperties": false, "properties": {
                "display_name": {"type": "string"}, "status": {"type": "string", "enum": ["applied", "approved", "rejected", "onboarding", "active", "suspended"]},
                "steps_done": {"type": "array", "items": {"type": "string"}}}},
            "Tier": {"type": "object", "additionalProperties": false, "required": ["from_minor", "rate_bps"], "properties": {
                "from_minor": {"type": "integer", "minimum": 0}, "rate_bps": {"type": "integer", "minimum": 0, "maximum": 10000}}},
            "Rule": {"type": "object", "properties": {"id": uuid, "name": {"type": "string"}, "beneficiary": {"type": "string", "enum": ["affiliate", "owner"]},
                "affiliate_id": nullable_uuid, "currency": {"type": "string"}, "tiers": {"type": "array", "items": {"$ref": "#/components/schemas/Tier"}},
                "approval_threshold_minor": {"type": ["integer", "null"]}, "active": {"type": "boolean"}, "created_at": time}},
            "RuleList": {"type": "object", "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Rule"}}}},
            "CreateRule": {"type": "object", "additionalProperties": false, "required": ["name", "beneficiary", "currency", "tiers"], "properties": {
                "name": {"type": "string"}, "beneficiary": {"type": "string", "enum": ["affiliate", "owner"]}, "affiliate_id": uuid,
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$"}, "tiers": {"type": "array", "items": {"$ref": "#/components/schemas/Tier"}},
                "approval_threshold_minor": {"type": "integer", "minimum": 0, "description": "lines up to this amount are approved by the commission agent when the deal is won; larger ones wait for a manager; absent: every line waits for a person"}}},
            "Commission": {"type": "object", "description": "amount_minor = Σ tiers (part of base_minor in the tier × rate_bps) / 10,000, rounded half away from zero once",
                "properties": {"id": uuid, "deal_id": uuid, "rule_id": uuid, "affiliate_id": nullable_uuid, "user_id": nullable_uuid,
                "base_minor": {"type": "integer"}, "amount_minor": {"type": "integer"}, "currency": {"type": "string"},
                "period": {"type": "string", "format": "date"}, "status": {"type": "string", "enum": ["pending", "approved", "paid"]}}},
            "CommissionPage": page("Commission"),
            "ClaimStatus": {"type": "string", "enum": ["submitted", "under_review", "approved", "rejected", "refunded"]},
            "Claim": {"type": "object", "properties": {"id": uuid, "contact_id": nullable_uuid, "deal_id": nullable_uuid,
                "description": {"type": "string"}, "claimed_minor": {"type": "integer"}, "currency": {"type": "string"},
                "status": {"$ref": "#/components/schemas/ClaimStatus"}, "evidence": {"type": "array"}, "decision_note": nullable_text,
                "approved_minor": {"type": ["integer", "null"]}, "approved_by_user_id": nullable_uuid,
                "approved_at": {"type": ["string", "null"], "format": "date-time"}, "created_at": time, "updated_at": time}},
            "ClaimPage": page("Claim"),
            "ApprovalStatus": {"type": "string", "enum": ["pending", "approved", "rejected"]},
            "Approval": {"type": "object", "properties": {"id": uuid,
                "kind": {"type": "string", "enum": ["refund", "guarantee_payout", "commission_change", "discount"]},
                "status": {"$ref": "#/components/schemas/ApprovalStatus"}, "conversation_id": nullable_uuid,
                "agent": {"type": "string"}, "tool": {"type": "string"}, "arguments": {"type": "object"},
                "summary": {"type": "string"}, "subject_type": {"type": "string", "enum": ["guarantee_claim", "commission", "deal", "proposal"]},
                "subject_id": uuid, "amount_minor": {"type": ["integer", "null"]}, "currency": {"type": ["string", "null"]},
                "requested_at": time, "decided_by_user_id": nullable_uuid,
                "decided_at": {"type": ["string", "null"], "format": "date-time"}, "decision_note": {"type": ["string", "null"]}}},
            "ApprovalPage": page("Approval"),
            "ApprovalDecision": {"type": "object", "additionalProperties": false, "required": ["approve"], "properties": {
                "approve": {"type": "boolean"}, "note": {"type": "string", "maxLength": 2000}}},
            "CreateClaim": {"type": "object", "additionalProperties": false, "required": ["description", "claimed_minor", "currency"],
                "properties": {"contact_id": uuid, "deal_id": uuid, "description": {"type": "string", "minLength": 1, "maxLength": 5000},
                "claimed_minor": {"$ref": "#/components/schemas/Money"}, "currency": {"type": "string", "pattern": "^[A-Z]{3}$"}}},
            "ReviewClaim": {"type": "object", "additionalProperties": false, "required": ["status"], "properties": {
                "status": {"$ref": "#/components/schemas/ClaimStatus"}, "approved_minor": {"$ref": "#/components/schemas/Money"},
                "decision_note": {"type": "string", "maxLength": 2000}}},
            "Evidence": {"type": "object", "additionalProperties": false, "required": ["file_name", "content_type", "size_bytes", "sha256"],
                "properties": {"file_name": {"type": "string"}, "content_type": {"type": "string"}, "size_bytes": {"type": "integer", "minimum": 0},
                "sha256": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}}},
            "RefundRequest": {"type": "object", "additionalProperties": false, "required": ["amount_minor"],
                "properties": {"amount_minor": {"$ref": "#/components/schemas/Money"}}},
            "Refund": {"type": "object", "properties": {"id": uuid, "claim_id": uuid, "amount_minor": {"type": "integer"},
                "currency": {"type": "string"}, "approved_by_user_id": uuid, "refunded_by_user_id": uuid, "created_at": time}},
            "PlatformTenants": {"type": "object", "description": "Across tenants by design: the one cross-tenant read of the API.",
                "properties": {"tenants": {"type": "integer"}, "messages": {"type": "integer"},
                "items": {"type": "array", "items": {"type": "object", "properties": {"id": uuid, "slug": {"type": "string"},
                "name": {"type": "string"}, "created_at": time, "users": {"type": "integer"}, "contacts": {"type": "integer"},
                "conversations": {"type": "integer"}, "messages": {"type": "integer"}, "leads": {"type": "integer"}, "deals": {"type": "integer"}}}}}},
            "DisputeStatus": {"type": "string", "enum": ["open", "under_review", "resolved"]},
            "SubjectKind": {"type": "string", "enum": ["commission", "guarantee_claim"]},
            "Dispute": {"type": "object", "properties": {"id": uuid, "subject_kind": {"$ref": "#/components/schemas/SubjectKind"},
                "subject_id": uuid, "reason": {"type": "string"}, "status": {"$ref": "#/components/schemas/DisputeStatus"},
                "resolution": nullable_text, "raised_by_user_id": nullable_uuid, "raised_by_role": {"type": "string"},
                "resolved_by_user_id": nullable_uuid, "resolved_at": {"type": ["string", "null"], "format": "date-time"},
                "created_at": time, "updated_at": time}},
            "DisputePage": page("Dispute"),
            "CreateDispute": {"type": "object", "additionalProperties": false, "required": ["subject_kind", "subject_id", "reason"],
                "properties": {"subject_kind": {"$ref": "#/components/schemas/SubjectKind"}, "subject_id": uuid,
                "reason": {"type": "string", "minLength": 1, "maxLength": 5000}}},
            "UpdateDispute": {"type": "object", "additionalProperties": false, "required": ["status"], "properties": {
                "status": {"$ref": "#/components/schemas/DisputeStatus"}, "resolution": {"type": "string", "maxLength": 5000}}},
            "SalesProfile": {"type": "object", "additionalProperties": false, "properties": {
                "sectors": {"type": "array", "items": {"type": "string"}}, "territories": {"type": "array", "items": {"type": "string"}},
                "accepts_leads": {"type": "boolean", "default": true},
                "max_discount_bps": {"type": "integer", "minimum": 0, "maximum": 10000, "default": 500,
                    "description": "the largest discount (basis points) an agent may put on this rep's deals without a manager's approval"}}},
            "CreateStage": {"type": "object", "additionalProperties": false, "required": ["name", "position", "probability"], "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 100}, "position": {"type": "integer", "minimum": 0},
                "probability": {"type": "integer", "minimum": 0, "maximum": 100}, "kind": {"type": "string", "enum": ["open", "won", "lost"], "default": "open"}}},
            "UpdateStage": {"type": "object", "additionalProperties": false, "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 100}, "position": {"type": "integer", "minimum": 0},
                "probability": {"type": "integer", "minimum": 0, "maximum": 100}}},
            "UpdateRule": {"type": "object", "additionalProperties": false, "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 200}, "active": {"type": "boolean"}}},
            "UpdateCommission": {"type": "object", "additionalProperties": false, "required": ["status"], "properties": {
                "status": {"type": "string", "enum": ["pending", "approved", "paid"]}}},
            "PayoutList": {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "object", "properties": {
                "affiliate_id": nullable_uuid, "user_id": nullable_uuid, "currency": {"type": "string"},
                "commissions": {"type": "integer"}, "amount_minor": {"type": "integer"}}}}}},
            "Forecast": {"type": "object", "description": "Weighted amount = Σ(amount_minor × probability) / 100 per period and currency, rounded half away from zero once per row.",
                "properties": {"items": {"type": "array", "items": {"type": "object", "properties": {
                "period": {"type": "string", "format": "date"}, "currency": {"type": "string"}, "deals": {"type": "integer"},
                "pipeline_minor": {"type": "integer"}, "weighted_minor": {"type": "integer"},
                "agent_forecast": {"type": ["object", "null"], "description": "the forecaster agent's latest estimate for the month (monthly periods)",
                    "properties": {"amount_minor": {"type": "integer"}, "reasons": {"type": "string"}, "created_at": time}}}}}}},
            "LlmUsage": {"type": "object", "description": "Costs are in millionths of a US dollar (cost_micros), from the price table (LLM_PRICES over built-in list prices); days are UTC.",
                "properties": {"from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"},
                "items": {"type": "array", "items": {"type": "object", "properties": {
                    "day": {"type": "string", "format": "date"}, "agent": {"type": "string"}, "model": {"type": "string"},
                    "calls": {"type": "integer"}, "tokens_in": {"type": "integer"}, "tokens_out": {"type": "integer"},
                    "cost_micros": {"type": "integer"}}}},
                "totals": {"$ref": "#/components/schemas/UsageTotals"}, "today": {"$ref": "#/components/schemas/UsageTotals"},
                "month": {"$ref": "#/components/schemas/UsageTotals"},
                "caps": {"$ref": "#/components/schemas/LlmSettings"}}},
            "LlmSettings": {"type": "object", "additionalProperties": false, "description": "Absent or null caps are unlimited; days and months are UTC.",
                "properties": {"model": {"type": ["string", "null"], "description": "the model for every agent"},
                    "agent_models": {"type": "object", "additionalProperties": {"type": "string"}, "description": "agent kind → model, over `model`"},
                    "daily_tokens": {"type": ["integer", "null"], "minimum": 0}, "monthly_tokens": {"type": ["integer", "null"], "minimum": 0},
                    "daily_cost_usd": {"type": ["number", "null"], "minimum": 0}, "monthly_cost_usd": {"type": ["number", "null"], "minimum": 0}}},
            "UsageTotals": {"type": "object", "properties": {"calls": {"type": "integer"}, "tokens": {"type": "integer"}, "cost_micros": {"type": "integer"}}},
            "PipelineSummary": {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "object", "properties": {
                "stage_id": uuid, "name": {"type": "string"}, "position": {"type": "integer"}, "probability": {"type": "integer"},
                "currency": {"type": ["string", "null"]}, "deals": {"type": "integer"}, "amount_minor": {"type": "integer"},
                "weighted_minor": {"type": "integer"}}}}}}
    });
    if let Value::Object(map) = part {
        schemas.extend(map);
    }
    json!({
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        "schemas": schemas,
    })
}

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn operation(route: &RouteSpec) -> Value {
    let mut parameters = Vec::new();
    if route.path.contains("{id}") {
        parameters.push(json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}));
    }
    for (name, kind, description) in route.query {
        let schema = match *kind {
            "integer" => json!({"type": "integer"}),
            "uuid" => json!({"type": "string", "format": "uuid"}),
            "date" => json!({"type": "string", "format": "date"}),
            "date-time" => json!({"type": "string", "format": "date-time"}),
            "boolean" => json!({"type": "boolean"}),
            "string" => json!({"type": "string"}),
            other => json!({"$ref": format!("#/components/schemas/{other}")}),
        };
        parameters.push(json!({"name": name, "in": "query", "required": false, "schema": schema, "description": description}));
    }
    let mut responses = serde_json::Map::new();
    let media = if route.response == "Ics" {
        "text/calendar"
    } else {
        "application/json"
    };
    let mut success = serde_json::Map::new();
    success.insert(
        media.into(),
        json!({"schema": {"$ref": format!("#/components/schemas/{}", route.response)}}),
    );
    responses.insert(
        route.status.to_string(),
        if route.status == 204 {
            json!({"description": "success, no body"})
        } else {
            json!({"description": "success", "content": success})
        },
    );
    responses.insert("400".into(), error_response("malformed request"));
    responses.insert("401".into(), error_response("no valid token"));
    if route.roles.is_some() {
        responses.insert("403".into(), error_response("the role may not do this"));
    }
    if route.object.is_some() || route.path.contains("{id}") {
        responses.insert(
            "404".into(),
            error_response("not found (also for another tenant's object)"),
        );
    }
    if route.request.is_some() {
        responses.insert(
            "409".into(),
            error_response("conflicts with the current state"),
        );
        responses.insert("413".into(), error_response("body over 1 MiB"));
        responses.insert("415".into(), error_response("body is not JSON"));
        responses.insert(
            "422".into(),
            error_response("invalid field, unknown field or unknown enum value"),
        );
    }
    let mut op = json!({
        "summary": route.summary,
        "tags": [route.tag],
        "operationId": format!("{}{}", route.method, route.path.replace(['/', '{', '}'], "_")),
        "parameters": parameters,
        "responses": responses,
        "x-roles": route.roles.map(|r| r.iter().map(|r| r.as_str()).collect::<Vec<_>>()),
    });
    if route.roles.is_some() {
        op["security"] = json!([{"bearer": []}]);
    } else {
        op["security"] = json!([]);
    }
    if let Some(schema) = route.request {
        let mut content = json!({"schema": {"$ref": format!("#/components/schemas/{schema}")}});
        if let Some(example) = route.example {
            content["example"] = example(&Ids::new());
        }
        op["requestBody"] = json!({"required": true, "content": {"application/json": content}});
    }
    op
}

/// The OpenAPI 3.1 document of every `/api/v1` route.
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for route in CATALOG {
        let entry = paths
            .entry(format!("/api/v1{}", route.path))
            .or_insert_with(|| json!({}));
        entry[route.method] = operation(route);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Wasit API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Tenant-scoped REST for Wasit's CRM. The tenant comes from the bearer token only; another tenant's object answers 404. Errors are {\"error\": {\"code\", \"message\"}}; lists take limit and cursor."
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": components(),
    })
}

pub async fn openapi_json() -> Json<Value> {
    Json(document())
}

/// A page that renders `/openapi.json` (no external assets: it works offline).
pub async fn docs_page() -> Html<&'static str> {
    Html(include_str!("docs.html"))
}
