//! Reps' working hours and meetings. Double booking is prevented by the database
//! (`meetings_no_double_booking`, an exclusion constraint); working hours are checked in SQL in
//! the rep's own time zone.

use runtime::db::TenantTx;
use runtime::{ContactId, LeadId, UserId};
use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, Time};

/// One stretch of a working day. Weekday: ISO, 1 = Monday … 7 = Sunday.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
#[serde(deny_unknown_fields)]
pub struct Hours {
    pub weekday: i16,
    #[serde(with = "hh_mm")]
    pub starts: Time,
    #[serde(with = "hh_mm")]
    pub ends: Time,
}

/// `HH:MM` (seconds accepted on input).
mod hh_mm {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Time;

    pub fn serialize<S: Serializer>(t: &Time, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:02}:{:02}", t.hour(), t.minute()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Time, D::Error> {
        let raw = String::deserialize(d)?;
        parse(&raw).ok_or_else(|| {
            serde::de::Error::custom(format!("{raw:?} is not a time of day (HH:MM)"))
        })
    }

    fn parse(raw: &str) -> Option<Time> {
        let parts: Vec<&str> = raw.split(':').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.len() != 2) {
            return None;
        }
        let field = |i: usize| parts.get(i).map_or(Some(0), |p| p.parse::<u8>().ok());
        let (hour, minute, second) = (field(0)?, field(1)?, field(2)?);
        Time::from_hms(hour, minute, second).ok()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkingHours {
    pub user_id: UserId,
    /// IANA name, e.g. `Asia/Riyadh`; `None` when no hours are set (bookable any time).
    pub time_zone: Option<String>,
    pub hours: Vec<Hours>,
}

/// The user, if the tenant's (`NotFound` otherwise).
async fn require_user(tx: &mut TenantTx, user: UserId) -> runtime::Result<()> {
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM users WHERE tenant_id = wasit_current_tenant() AND id = $1)",
    )
    .bind(user)
    .fetch_one(&mut **tx)
    .await?;
    if exists {
        Ok(())
    } else {
        Err(runtime::Error::NotFound("user"))
    }
}

pub async fn working_hours(tx: &mut TenantTx, user: UserId) -> runtime::Result<WorkingHours> {
    require_user(tx, user).await?;
    let rows: Vec<(i16, Time, Time, String)> = sqlx::query_as(
        "SELECT weekday, starts, ends, time_zone FROM rep_working_hours
         WHERE tenant_id = wasit_current_tenant() AND user_id = $1 ORDER BY weekday, starts",
    )
    .bind(user)
    .fetch_all(&mut **tx)
    .await?;
    Ok(WorkingHours {
        user_id: user,
        time_zone: rows.first().map(|r| r.3.clone()),
        hours: rows
            .into_iter()
            .map(|(weekday, starts, ends, _)| Hours {
                weekday,
                starts,
                ends,
            })
            .collect(),
    })
}

/// Replaces a rep's working hours. The time zone must be one PostgreSQL knows; stretches of one
/// day must not overlap.
pub async fn set_working_hours(
    tx: &mut TenantTx,
    user: UserId,
    time_zone: &str,
    hours: &[Hours],
) -> runtime::Result<WorkingHours> {
    require_user(tx, user).await?;
    let known: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = $1)")
            .bind(time_zone)
            .fetch_one(&mut **tx)
            .await?;
    if !known {
        return Err(runtime::Error::Invalid(format!(
            "{time_zone:?} is not a time zone (use an IANA name such as Asia/Riyadh)"
        )));
    }
    sqlx::query(
        "DELETE FROM rep_working_hours WHERE tenant_id = wasit_current_tenant() AND user_id = $1",
    )
    .bind(user)
    .execute(&mut **tx)
    .await?;
    for h in hours {
        sqlx::query(
            "INSERT INTO rep_working_hours (tenant_id, user_id, weekday, starts, ends, time_zone)
             VALUES (wasit_current_tenant(), $1, $2, $3, $4, $5)",
        )
        .bind(user)
        .bind(h.weekday)
        .bind(h.starts)
        .bind(h.ends)
        .bind(time_zone)
        .execute(&mut **tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.code().as_deref() == Some("23P01") => {
                runtime::Error::Invalid(format!("working hours overlap on weekday {}", h.weekday))
            }
            _ => e.into(),
        })?;
    }
    working_hours(tx, user).await
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeetingStatus {
    Scheduled,
    Cancelled,
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Meeting {
    pub id: uuid::Uuid,
    pub rep_user_id: UserId,
    pub contact_id: Option<ContactId>,
    pub lead_id: Option<LeadId>,
    pub deal_id: Option<uuid::Uuid>,
    pub title: String,
    pub location: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
    pub status: String,
    pub sequence: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

const COLUMNS: &str = "id, rep_user_id, contact_id, lead_id, deal_id, title, location, starts_at, \
                       ends_at, status, sequence, created_at, updated_at";

pub async fn find(tx: &mut TenantTx, id: uuid::Uuid, lock: bool) -> runtime::Result<Meeting> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    sqlx::query_as::<_, Meeting>(&format!(
        "SELECT {COLUMNS} FROM meetings WHERE tenant_id = wasit_current_tenant() AND id = $1{lock}"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(runtime::Error::NotFound("meeting"))
}

/// `Invalid` unless the slot lies within one stretch of the rep's working hours, in the rep's
/// time zone, on one day. A rep with no working hours set is bookable any time.
async fn check_working_hours(
    tx: &mut TenantTx,
    rep: UserId,
    starts_at: OffsetDateTime,
    ends_at: OffsetDateTime,
) -> runtime::Result<()> {
    let (has_hours, fits): (bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM rep_working_hours WHERE tenant_id = wasit_current_tenant() AND user_id = $1),
                EXISTS (SELECT 1 FROM rep_working_hours h
                        WHERE h.tenant_id = wasit_current_tenant() AND h.user_id = $1
                          AND h.weekday = extract(isodow FROM $2 AT TIME ZONE h.time_zone)
                          AND ($2 AT TIME ZONE h.time_zone)::date = ($3 AT TIME ZONE h.time_zone)::date
                          AND ($2 AT TIME ZONE h.time_zone)::time >= h.starts
                          AND ($3 AT TIME ZONE h.time_zone)::time <= h.ends)",
    )
    .bind(rep)
    .bind(starts_at)
    .bind(ends_at)
    .fetch_one(&mut **tx)
    .await?;
    if has_hours && !fits {
        return Err(runtime::Error::Invalid(
            "the meeting is outside the rep's working hours".into(),
        ));
    }
    Ok(())
}

/// A slot another scheduled meeting of the rep overlaps is a conflict; a record the tenant does
/// not have is named like a missing one.
fn booking_error(e: sqlx::Error) -> runtime::Error {
    match &e {
        sqlx::Error::Database(d) if d.constraint() == Some("meetings_no_double_booking") => {
            runtime::Error::Conflict("the rep already has a meeting at that time".into())
        }
        _ => super::foreign_key_is_invalid(e),
    }
}

#[derive(Debug)]
pub struct NewMeeting {
    pub rep_user_id: UserId,
    pub contact_id: Option<ContactId>,
    pub lead_id: Option<LeadId>,
    pub deal_id: Option<uuid::Uuid>,
    pub title: String,
    pub location: Option<String>,
    pub starts_at: OffsetDateTime,
    pub ends_at: OffsetDateTime,
}

pub async fn create(tx: &mut TenantTx, m: &NewMeeting) -> runtime::Result<Meeting> {
    require_user(tx, m.rep_user_id)
        .await
        .map_err(|_| runtime::Error::Invalid("rep_user_id is not a user of this tenant".into()))?;
    check_working_hours(tx, m.rep_user_id, m.starts_at, m.ends_at).await?;
    sqlx::query_as::<_, Meeting>(&format!(
        "INSERT INTO meetings (tenant_id, rep_user_id, contact_id, lead_id, deal_id, title, location, starts_at, ends_at)
         VALUES (wasit_current_tenant(), $1, $2, $3, $4, $5, $6, $7, $8)
         RETURNING {COLUMNS}"
    ))
    .bind(m.rep_user_id)
    .bind(m.contact_id)
    .bind(m.lead_id)
    .bind(m.deal_id)
    .bind(&m.title)
    .bind(&m.location)
    .bind(m.starts_at)
    .bind(m.ends_at)
    .fetch_one(&mut **tx)
    .await
    .map_err(booking_error)
}

/// Writes back a changed meeting (time, title, location, status), bumping its sequence; a new
/// time is checked against working hours and other meetings.
pub async fn save(tx: &mut TenantTx, m: &Meeting, time_changed: bool) -> runtime::Result<Meeting> {
    if time_changed && m.status == "scheduled" {
        check_working_hours(tx, m.rep_user_id, m.starts_at, m.ends_at).await?;
    }
    sqlx::query_as::<_, Meeting>(&format!(
        "UPDATE meetings SET title = $2, location = $3, starts_at = $4, ends_at = $5, status = $6,
                             sequence = sequence + 1, updated_at = now()
         WHERE tenant_id = wasit_current_tenant() AND id = $1
         RETURNING {COLUMNS}"
    ))
    .bind(m.id)
    .bind(&m.title)
    .bind(&m.location)
    .bind(m.starts_at)
    .bind(m.ends_at)
    .bind(&m.status)
    .fetch_one(&mut **tx)
    .await
    .map_err(booking_error)
}

/// Meetings starting in `[from, to)` after the cursor (`starts_at`, id), optionally of one rep, in
/// time order.
pub async fn list(
    tx: &mut TenantTx,
    rep: Option<UserId>,
    from: OffsetDateTime,
    to: OffsetDateTime,
    after: Option<super::Cursor>,
    limit: i64,
) -> runtime::Result<Vec<Meeting>> {
    Ok(sqlx::query_as::<_, Meeting>(&format!(
        "SELECT {COLUMNS} FROM meetings
         WHERE tenant_id = wasit_current_tenant() AND ($1::uuid IS NULL OR rep_user_id = $1)
           AND starts_at >= $2 AND starts_at < $3
           AND ($4::timestamptz IS NULL OR (starts_at, id) > ($4, $5))
         ORDER BY starts_at, id LIMIT $6"
    ))
    .bind(rep)
    .bind(from)
    .bind(to)
    .bind(after.map(|c| c.created_at))
    .bind(after.map(|c| c.id))
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}

/// The meeting as an iCalendar (RFC 5545) object: CRLF line ends, text escaped, lines folded at
/// 75 octets without splitting a UTF-8 character, times in UTC, and `SEQUENCE`/`STATUS` so that a
/// reschedule or cancellation updates the calendar entry.
pub fn ics(m: &Meeting, tenant_slug: &str) -> String {
    fn stamp(t: OffsetDateTime) -> String {
        let t = t.to_offset(time::UtcOffset::UTC);
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }
    fn escape(s: &str) -> String {
        s.replace('\\', "\\\\")
            .replace(';', "\\;")
            .replace(',', "\\,")
            .replace('\n', "\\n")
            .replace('\r', "")
    }
    fn fold(line: &str) -> String {
        let mut out = String::new();
        let mut width = 0;
        for c in line.chars() {
            let len = c.len_utf8();
            if width + len > 75 {
                out.push_str("\r\n ");
                width = 1;
            }
            out.push(c);
            width += len;
        }
        out.push_str("\r\n");
        out
    }
    let mut lines = vec![
        "BEGIN:VCALENDAR".to_owned(),
        "VERSION:2.0".to_owned(),
        "PRODID:-//Wasit//Meetings//EN".to_owned(),
        "METHOD:PUBLISH".to_owned(),
        "BEGIN:VEVENT".to_owned(),
        format!("UID:{}@{tenant_slug}.wasit", m.id),
        format!("DTSTAMP:{}", stamp(m.updated_at)),
        format!("DTSTART:{}", stamp(m.starts_at)),
        format!("DTEND:{}", stamp(m.ends_at)),
        format!("SEQUENCE:{}", m.sequence),
        format!(
            "STATUS:{}",
            if m.status == "cancelled" {
                "CANCELLED"
            } else {
                "CONFIRMED"
            }
        ),
        format!("SUMMARY:{}", escape(&m.title)),
    ];
    if let Some(location) = &m.location {
        lines.push(format!("LOCATION:{}", escape(location)));
    }
    lines.push("END:VEVENT".to_owned());
    lines.push("END:VCALENDAR".to_owned());
    lines.iter().map(|l| fold(l)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ics_escapes_folds_whole_characters_and_uses_crlf() {
        let t = OffsetDateTime::from_unix_timestamp(1_796_000_400).unwrap();
        let m = Meeting {
            id: uuid::Uuid::nil(),
            rep_user_id: UserId(uuid::Uuid::nil()),
            contact_id: None,
            lead_id: None,
            deal_id: None,
            title: "موعد مع سارة، لمناقشة عرض السبائك; الذهب عيار ٢٤ والضمان الذهبي".into(),
            location: Some("الرياض, حي العليا".into()),
            starts_at: t,
            ends_at: t + time::Duration::hours(1),
            status: "scheduled".into(),
            sequence: 2,
            created_at: t,
            updated_at: t,
        };
        let text = ics(&m, "riyadh-gold");
        assert!(text.starts_with("BEGIN:VCALENDAR\r\n"));
        assert!(text.ends_with("END:VCALENDAR\r\n"));
        assert!(
            !text.replace("\r\n", "").contains('\n'),
            "only CRLF line ends"
        );
        for line in text.split("\r\n") {
            assert!(line.len() <= 75, "{line:?} is {} octets", line.len());
        }
        let unfolded = text.replace("\r\n ", "");
        assert!(
            unfolded.contains("DTSTART:20261130T010000Z\r\n"),
            "{unfolded}"
        );
        assert!(unfolded.contains("DTEND:20261130T020000Z\r\n"));
        assert!(unfolded.contains("SEQUENCE:2\r\n"));
        assert!(unfolded.contains(
            "SUMMARY:موعد مع سارة، لمناقشة عرض السبائك\\; الذهب عيار ٢٤ والضمان الذهبي\r\n"
        ));
        assert!(unfolded.contains("LOCATION:الرياض\\, حي العليا\r\n"));
        assert!(
            unfolded.contains("UID:00000000-0000-0000-0000-000000000000@riyadh-gold.wasit\r\n")
        );
    }
}
