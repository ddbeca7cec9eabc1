//! Reps' working hours and meetings: `GET/PUT /users/{id}/working-hours`, `GET/POST /meetings`,
//! `GET/PATCH /meetings/{id}`, `GET /meetings/{id}/ics`. Two meetings of one rep never overlap
//! (the database refuses; 409); a meeting outside the rep's working hours is refused (422).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use runtime::{ContactId, LeadId, UserId};
use serde::Deserialize;
use time::OffsetDateTime;

use super::{Page, PageQuery};
use crate::app::AppState;
use crate::auth::{AuthUser, Role};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::repo;
use crate::repo::audit;
use crate::repo::meetings::{self, Hours, Meeting, MeetingStatus, NewMeeting, WorkingHours};

/// Who may read working hours and read and book meetings.
pub const ROLES: &[Role] = Role::SALES;
/// Who may set a rep's working hours.
pub const HOURS_EDITORS: &[Role] = &[Role::Superadmin, Role::Admin, Role::SalesManager];

fn user_id(raw: &str) -> Result<UserId, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound("user"))
}

fn meeting_id(raw: &str) -> Result<uuid::Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound("meeting"))
}

pub async fn get_hours(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<WorkingHours>, ApiError> {
    auth.require(ROLES)?;
    let id = user_id(&id)?;
    let mut tx = auth.begin(&state.db).await?;
    let hours = meetings::working_hours(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(hours))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetHours {
    /// IANA time zone of the hours, e.g. `Asia/Riyadh`.
    pub time_zone: String,
    pub hours: Vec<Hours>,
}

pub async fn set_hours(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<SetHours>,
) -> Result<Json<WorkingHours>, ApiError> {
    auth.require(HOURS_EDITORS)?;
    let id = user_id(&id)?;
    if let Some(h) = req.hours.iter().find(|h| !(1..=7).contains(&h.weekday)) {
        return Err(ApiError::Invalid(format!(
            "weekday is 1 (Monday) to 7 (Sunday), not {}",
            h.weekday
        )));
    }
    if let Some(h) = req.hours.iter().find(|h| h.ends <= h.starts) {
        return Err(ApiError::Invalid(format!(
            "on weekday {} the hours end before they start",
            h.weekday
        )));
    }
    let mut tx = auth.begin(&state.db).await?;
    let before = meetings::working_hours(&mut tx, id).await?;
    let after = meetings::set_working_hours(&mut tx, id, req.time_zone.trim(), &req.hours).await?;
    audit::record(
        &mut tx,
        &auth,
        "update",
        "working_hours",
        id.0,
        &before,
        &after,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(after))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub rep_user_id: Option<UserId>,
    /// Default: now.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub from: Option<OffsetDateTime>,
    /// Default: 90 days after `from`.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub to: Option<OffsetDateTime>,
    pub limit: Option<i64>,
    /// The next_cursor of the previous page.
    pub cursor: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<Meeting>>, ApiError> {
    auth.require(ROLES)?;
    let limit = PageQuery::limit_of(q.limit)?;
    let after = super::parse_cursor(q.cursor.as_deref())?;
    let from = q.from.unwrap_or_else(OffsetDateTime::now_utc);
    let to = q.to.unwrap_or(from + time::Duration::days(90));
    if to <= from {
        return Err(ApiError::Invalid("to is after from".into()));
    }
    let mut tx = auth.begin(&state.db).await?;
    let items = meetings::list(&mut tx, q.rep_user_id, from, to, after, limit + 1).await?;
    tx.commit().await?;
    Ok(Json(Page::from_rows(items, limit, |m| {
        crate::repo::Cursor::new(m.starts_at, m.id)
    })))
}

pub async fn get(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Meeting>, ApiError> {
    auth.require(ROLES)?;
    let id = meeting_id(&id)?;
    let mut tx = auth.begin(&state.db).await?;
    let meeting = meetings::find(&mut tx, id, false).await?;
    tx.commit().await?;
    Ok(Json(meeting))
}

fn check_slot(starts_at: OffsetDateTime, ends_at: OffsetDateTime) -> Result<(), ApiError> {
    if ends_at <= starts_at {
        return Err(ApiError::Invalid("ends_at is after starts_at".into()));
    }
    if ends_at - starts_at > time::Duration::hours(12) {
        return Err(ApiError::Invalid("a meeting lasts at most 12 hours".into()));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateMeeting {
    pub rep_user_id: UserId,
    pub title: String,
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
    pub location: Option<String>,
    pub contact_id: Option<ContactId>,
    pub lead_id: Option<LeadId>,
    pub deal_id: Option<uuid::Uuid>,
}

pub async fn create(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(req): ApiJson<CreateMeeting>,
) -> Result<(StatusCode, Json<Meeting>), ApiError> {
    auth.require(ROLES)?;
    let title = super::check_title(&req.title)?;
    check_slot(req.starts_at, req.ends_at)?;
    let new = NewMeeting {
        rep_user_id: req.rep_user_id,
        contact_id: req.contact_id,
        lead_id: req.lead_id,
        deal_id: req.deal_id,
        title,
        location: req.location,
        starts_at: req.starts_at,
        ends_at: req.ends_at,
    };
    let mut tx = auth.begin(&state.db).await?;
    let meeting = meetings::create(&mut tx, &new).await?;
    audit::record_new(&mut tx, &auth, "create", "meeting", meeting.id, &meeting).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(meeting)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeeting {
    pub title: Option<String>,
    #[serde(default, deserialize_with = "super::nullable")]
    pub location: Option<Option<String>>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub starts_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub ends_at: Option<OffsetDateTime>,
    /// `cancelled` cancels (final); `scheduled` is where it already is.
    pub status: Option<MeetingStatus>,
}

pub async fn update(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateMeeting>,
) -> Result<Json<Meeting>, ApiError> {
    auth.require(ROLES)?;
    let id = meeting_id(&id)?;
    let mut tx = auth.begin(&state.db).await?;
    let before = meetings::find(&mut tx, id, true).await?;
    if before.status == "cancelled" {
        return Err(ApiError::Conflict(
            "the meeting is cancelled; book a new one".into(),
        ));
    }
    let mut meeting = before.clone();
    if let Some(title) = &req.title {
        meeting.title = super::check_title(title)?;
    }
    if let Some(location) = req.location {
        meeting.location = location;
    }
    meeting.starts_at = req.starts_at.unwrap_or(meeting.starts_at);
    meeting.ends_at = req.ends_at.unwrap_or(meeting.ends_at);
    let time_changed = meeting.starts_at != before.starts_at || meeting.ends_at != before.ends_at;
    if time_changed {
        check_slot(meeting.starts_at, meeting.ends_at)?;
    }
    if req.status == Some(MeetingStatus::Cancelled) {
        meeting.status = "cancelled".into();
    }
    let saved = meetings::save(&mut tx, &meeting, time_changed).await?;
    audit::record(
        &mut tx, &auth, "update", "meeting", saved.id, &before, &saved,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(saved))
}

/// The meeting as an `.ics` file for any calendar.
pub async fn ics(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    auth.require(ROLES)?;
    let id = meeting_id(&id)?;
    let mut tx = auth.begin(&state.db).await?;
    let meeting = meetings::find(&mut tx, id, false).await?;
    let tenant = repo::tenants::current(&mut tx).await?;
    tx.commit().await?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "text/calendar; charset=utf-8".to_owned(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"meeting-{id}.ics\""),
            ),
        ],
        meetings::ics(&meeting, &tenant.slug),
    )
        .into_response())
}
