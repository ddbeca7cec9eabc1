//! The read side of conversations, for reps and prompt engineers: `GET /conversations`,
//! `GET /conversations/{id}`, `GET /conversations/{id}/messages`, `GET /conversations/{id}/turns`,
//! and `POST /conversations/{id}/hand-back`, which gives an escalated conversation back to the agents.

use axum::Json;
use axum::extract::{Path, State};
use runtime::{ConversationId, UserId};
use serde::Deserialize;

use super::{Page, PageQuery};
use crate::app::AppState;
use crate::auth::{AuthUser, Role};
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::repo::Cursor;
use crate::repo::conversations::{self, Conversation, Filter, Message, Turn};

/// Who reads conversations and their messages.
pub const ROLES: &[Role] = Role::SALES;
/// Who reads the audit of AI turns: the sales side, and prompt engineers.
pub const TURN_READERS: &[Role] = &[
    Role::Superadmin,
    Role::Admin,
    Role::SalesManager,
    Role::SalesRep,
    Role::PromptEngineer,
];

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Open,
    Escalated,
    Closed,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Whatsapp,
    Sms,
    Email,
    Chat,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub status: Option<Status>,
    pub needs_human: Option<bool>,
    pub owner_user_id: Option<UserId>,
    pub channel: Option<Channel>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<Conversation>>, ApiError> {
    auth.require(ROLES)?;
    let limit = PageQuery::limit_of(q.limit)?;
    let after = super::parse_cursor(q.cursor.as_deref())?;
    let filter = Filter {
        status: q.status.map(|s| {
            match s {
                Status::Open => "open",
                Status::Escalated => "escalated",
                Status::Closed => "closed",
            }
            .to_owned()
        }),
        needs_human: q.needs_human,
        owner_user_id: q.owner_user_id,
        channel: q.channel.map(|c| {
            match c {
                Channel::Whatsapp => "whatsapp",
                Channel::Sms => "sms",
                Channel::Email => "email",
                Channel::Chat => "chat",
            }
            .to_owned()
        }),
    };
    let mut tx = auth.begin(&state.db).await?;
    let items = conversations::list(&mut tx, &filter, after, limit + 1).await?;
    tx.commit().await?;
    Ok(Json(Page::from_rows(items, limit, |c| {
        Cursor::new(c.updated_at, c.id.0)
    })))
}

fn conversation_id(raw: &str) -> Result<ConversationId, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound("conversation"))
}

pub async fn get(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Conversation>, ApiError> {
    auth.require(ROLES)?;
    let id = conversation_id(&id)?;
    let mut tx = auth.begin(&state.db).await?;
    let conversation = conversations::find(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(conversation))
}

/// `POST /conversations/{id}/hand-back`: a person gives the conversation back to the agents. A rep
/// may hand back only a conversation that is theirs or no one's; managers and admins, any.
pub async fn hand_back(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Conversation>, ApiError> {
    auth.require(ROLES)?;
    let id = conversation_id(&id)?;
    let mut tx = auth.begin(&state.db).await?;
    let before = conversations::find(&mut tx, id).await?;
    if auth.role == Role::SalesRep
        && before.owner_user_id.is_some()
        && before.owner_user_id != auth.user
    {
        // Another rep has it: only they or a manager can hand it back.
        return Err(ApiError::Forbidden);
    }
    let after = conversations::hand_back(&mut tx, id).await?;
    crate::repo::audit::record(
        &mut tx,
        &auth,
        "hand_back",
        "conversation",
        id.0,
        &before,
        &after,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(after))
}

/// `?after=<seq or turn>&limit=`: pages in order, oldest first.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeqQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

fn after_seq(cursor: Option<&str>) -> Result<Option<i64>, ApiError> {
    cursor
        .map(|c| {
            c.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| ApiError::BadRequest("cursor is not valid".into()))
        })
        .transpose()
}

pub async fn messages(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<SeqQuery>,
) -> Result<Json<Page<Message>>, ApiError> {
    auth.require(ROLES)?;
    let id = conversation_id(&id)?;
    let limit = PageQuery::limit_of(q.limit)?;
    let after = after_seq(q.cursor.as_deref())?;
    let mut tx = auth.begin(&state.db).await?;
    let items = conversations::messages(&mut tx, id, after, limit + 1).await?;
    tx.commit().await?;
    Ok(Json(Page::from_rows_with(items, limit, |m| {
        m.seq.to_string()
    })))
}

pub async fn turns(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<SeqQuery>,
) -> Result<Json<Page<Turn>>, ApiError> {
    auth.require(TURN_READERS)?;
    let id = conversation_id(&id)?;
    let limit = PageQuery::limit_of(q.limit)?;
    let after = after_seq(q.cursor.as_deref())?;
    let mut tx = auth.begin(&state.db).await?;
    let items = conversations::turns(&mut tx, id, after, limit + 1).await?;
    tx.commit().await?;
    Ok(Json(Page::from_rows_with(items, limit, |t| {
        t.turn_seq.to_string()
    })))
}
