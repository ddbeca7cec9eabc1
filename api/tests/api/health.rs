use crate::helpers::spawn_app;

/// Liveness answers, and readiness reports the database and the runtime as up.
#[tokio::test]
async fn healthz_and_readyz_answer_ok() {
    let app = spawn_app().await;
    let health = app.get("/healthz", None).await;
    assert_eq!(health.status(), 200);
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "ok");
    assert_eq!(body["checks"]["runtime"], "ok");
}

/// Readiness fails (503) when the database is gone.
#[tokio::test]
async fn readyz_reports_a_closed_database() {
    let app = spawn_app().await;
    app.test_db.db().app.close().await;
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "unavailable");
}

/// Unknown routes under /api/v1 get the JSON error shape.
#[tokio::test]
async fn unknown_api_route_is_a_json_404() {
    let app = spawn_app().await;
    let res = app.get("/api/v1/no-such-thing", None).await;
    assert_eq!(crate::helpers::error_code(res, 404).await, "not_found");
}
