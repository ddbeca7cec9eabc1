//! Meetings through the REST API: working hours in the rep's time zone, no double booking even
//! under concurrent requests (the database decides), rescheduling, cancelling, and the .ics file.

use api::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{error_code, spawn_app};

/// Ten concurrent bookings of one slot: exactly one wins, nine get 409; an overlapping slot is
/// refused too, an adjacent one is not, and a cancellation frees the slot.
#[tokio::test]
async fn concurrent_bookings_of_one_slot_succeed_once() {
    let app = spawn_app().await;
    let tenant = app.test_db.tenant("riyadh-gold").await;
    let token = app.token(tenant, Role::SalesRep);
    let rep = app
        .test_db
        .user(
            tenant,
            "rep@example.com",
            Role::SalesRep,
            "long enough password",
        )
        .await;
    let book = |start: &str, end: &str| json!({"rep_user_id": rep.0, "title": "عرض السبائك", "starts_at": start, "ends_at": end});
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let body = book("2026-12-06T07:00:00Z", "2026-12-06T08:00:00Z");
        let (client, url, token) = (
            app.client.clone(),
            app.url("/api/v1/meetings"),
            token.clone(),
        );
        tasks.spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        });
    }
    let mut statuses = Vec::new();
    while let Some(status) = tasks.join_next().await {
        statuses.push(status.unwrap());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409, 409, 409, 409, 409, 409, 409, 409, 409]);
    assert_eq!(app.count("SELECT count(*) FROM meetings").await, 1);

    let overlap = app
        .send(
            "post",
            "/api/v1/meetings",
            Some(&token),
            Some(&book("2026-12-06T07:30:00Z", "2026-12-06T08:30:00Z")),
        )
        .await;
    assert_eq!(error_code(overlap, 409).await, "conflict");
    let adjacent = app
        .send(
            "post",
            "/api/v1/meetings",
            Some(&token),
            Some(&book("2026-12-06T08:00:00Z", "2026-12-06T08:30:00Z")),
        )
        .await;
    assert_eq!(
        adjacent.status(),
        201,
        "back-to-back meetings do not overlap"
    );

    let listed: Value = app
        .get_json(
            &format!(
                "/api/v1/meetings?rep_user_id={}&from=2026-12-06T00:00:00Z&to=2026-12-07T00:00:00Z",
                rep.0
            ),
            &token,
        )
        .await;
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let first = items[0]["id"].as_str().unwrap().to_owned();

    // Rescheduling into the other meeting's slot is a conflict; cancelling frees the slot.
    let path = format!("/api/v1/meetings/{first}");
    let r = app
        .send(
            "patch",
            &path,
            Some(&token),
            Some(&json!({"starts_at": "2026-12-06T07:45:00Z", "ends_at": "2026-12-06T08:15:00Z"})),
        )
        .await;
    assert_eq!(error_code(r, 409).await, "conflict");
    let r = app
        .send(
            "patch",
            &path,
            Some(&token),
            Some(&json!({"status": "cancelled"})),
        )
        .await;
    let cancelled: Value = r.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["sequence"], 1);
    let again = app
        .send(
            "post",
            "/api/v1/meetings",
            Some(&token),
            Some(&book("2026-12-06T07:00:00Z", "2026-12-06T08:00:00Z")),
        )
        .await;
    assert_eq!(again.status(), 201, "the cancelled meeting's slot is free");
    let r = app
        .send("patch", &path, Some(&token), Some(&json!({"title": "x"})))
        .await;
    assert_eq!(
        error_code(r, 409).await,
        "conflict",
        "a cancelled meeting is final"
    );

    // The .ics of the cancelled meeting says so, with its sequence.
    let ics = app.get(&format!("{path}/ics"), Some(&token)).await;
    assert_eq!(ics.status(), 200);
    assert_eq!(
        ics.headers()["content-type"].to_str().unwrap(),
        "text/calendar; charset=utf-8"
    );
    let text = ics.text().await.unwrap();
    assert!(text.contains("STATUS:CANCELLED\r\n"), "{text}");
    assert!(text.contains("SEQUENCE:1\r\n"));
    assert!(text.contains("DTSTART:20261206T070000Z\r\n"));
    assert!(text.contains(&format!("UID:{first}@riyadh-gold.wasit\r\n")));
}

/// With working hours set (Riyadh time, UTC+3), a meeting must fit one stretch of the day it
/// starts on; times are compared in the rep's zone, not UTC.
#[tokio::test]
async fn meetings_fit_the_reps_working_hours_in_the_reps_time_zone() {
    let app = spawn_app().await;
    let tenant = app.test_db.tenant("riyadh-gold").await;
    let manager = app.token(tenant, Role::SalesManager);
    let rep = app
        .test_db
        .user(
            tenant,
            "rep@example.com",
            Role::SalesRep,
            "long enough password",
        )
        .await;
    let hours_path = format!("/api/v1/users/{}/working-hours", rep.0);
    // Sunday 09:00–17:00 in Riyadh; Monday split 09:00–13:00 and 16:00–21:00.
    let r = app
        .send(
            "put",
            &hours_path,
            Some(&manager),
            Some(&json!({"time_zone": "Asia/Riyadh", "hours": [
                {"weekday": 7, "starts": "09:00", "ends": "17:00"},
                {"weekday": 1, "starts": "09:00", "ends": "13:00"},
                {"weekday": 1, "starts": "16:00", "ends": "21:00"}]})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let hours: Value = r.json().await.unwrap();
    assert_eq!(hours["time_zone"], "Asia/Riyadh");
    assert_eq!(
        hours["hours"][0],
        json!({"weekday": 1, "starts": "09:00", "ends": "13:00"})
    );

    let rep_token = app.token(tenant, Role::SalesRep);
    let book = |start: &str, end: &str| json!({"rep_user_id": rep.0, "title": "موعد", "starts_at": start, "ends_at": end});
    // 2026-12-06 is a Sunday. 06:00Z is 09:00 in Riyadh: inside; 05:30Z is 08:30: outside.
    for (start, end, status) in [
        ("2026-12-06T06:00:00Z", "2026-12-06T07:00:00Z", 201),
        ("2026-12-06T05:30:00Z", "2026-12-06T06:30:00Z", 422),
        ("2026-12-06T13:30:00Z", "2026-12-06T14:30:00Z", 422), // 16:30–17:30 Riyadh
        (
            "2026-12-06T13:00:00+03:00",
            "2026-12-06T14:00:00+03:00",
            201,
        ),
        // Monday: between the two stretches, and across them.
        ("2026-12-07T10:30:00Z", "2026-12-07T11:30:00Z", 422), // 13:30–14:30
        ("2026-12-07T09:00:00Z", "2026-12-07T14:00:00Z", 422), // 12:00–17:00
        ("2026-12-07T13:00:00Z", "2026-12-07T14:00:00Z", 201), // 16:00–17:00
        // Tuesday: no hours that day.
        ("2026-12-08T07:00:00Z", "2026-12-08T08:00:00Z", 422),
    ] {
        let r = app
            .send(
                "post",
                "/api/v1/meetings",
                Some(&rep_token),
                Some(&book(start, end)),
            )
            .await;
        assert_eq!(r.status().as_u16(), status, "{start} – {end}");
    }

    for body in [
        json!({"time_zone": "Mars/Olympus", "hours": []}),
        json!({"time_zone": "Asia/Riyadh", "hours": [{"weekday": 8, "starts": "09:00", "ends": "10:00"}]}),
        json!({"time_zone": "Asia/Riyadh", "hours": [{"weekday": 1, "starts": "10:00", "ends": "09:00"}]}),
        json!({"time_zone": "Asia/Riyadh", "hours": [{"weekday": 1, "starts": "9am", "ends": "10:00"}]}),
        json!({"time_zone": "Asia/Riyadh", "hours": [
            {"weekday": 1, "starts": "09:00", "ends": "12:00"}, {"weekday": 1, "starts": "11:00", "ends": "13:00"}]}),
    ] {
        let r = app
            .send("put", &hours_path, Some(&manager), Some(&body))
            .await;
        assert_eq!(error_code(r, 422).await, "invalid", "{body}");
    }
    let unchanged: Value = app.get_json(&hours_path, &manager).await;
    assert_eq!(unchanged, hours, "rejected changes left the hours alone");
    let rep_may_not = app
        .send(
            "put",
            &hours_path,
            Some(&rep_token),
            Some(&json!({"time_zone": "UTC", "hours": []})),
        )
        .await;
    assert_eq!(error_code(rep_may_not, 403).await, "forbidden");
}
