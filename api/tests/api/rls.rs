//! Row-level security: the catalog is set up as designed, and tenants cannot see each other's rows
//! however the application's pooled connections are reused.

use api::auth::Role;
use runtime::TenantId;
use runtime::db::{app_pool_options, begin_tenant};
use sqlx::PgPool;

use crate::helpers::TestDb;

/// Every table with a `tenant_id` column (and `tenants` itself) has RLS enabled and forced and a
/// policy; `wasit_app` owns no table, is no superuser and has no BYPASSRLS.
#[tokio::test]
async fn catalog_every_tenant_table_forces_rls_and_the_app_role_is_unprivileged() {
    let t = TestDb::new().await;
    let admin = &t.db().admin;
    let tables: Vec<(String, bool, bool, i64)> = sqlx::query_as(
        "SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity,
                (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid)
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
           AND (c.relname = 'tenants' OR EXISTS (
                SELECT 1 FROM pg_attribute a
                WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped))
         ORDER BY 1",
    )
    .fetch_all(admin)
    .await
    .unwrap();
    assert!(
        tables.len() >= 10,
        "expected the foundation's tenant tables, found {tables:?}"
    );
    for (name, enabled, forced, policies) in &tables {
        assert!(enabled, "{name}: row-level security is not enabled");
        assert!(forced, "{name}: row-level security is not forced");
        assert!(*policies > 0, "{name}: has no policy");
    }

    // Each policy compares with the transaction's tenant, for reads and for writes: a policy of
    // `USING (true)` would pass the checks above but not this one.
    let weak: Vec<String> = sqlx::query_scalar(
        "SELECT tablename || '.' || policyname FROM pg_policies
         WHERE schemaname = 'public' AND policyname <> 'owner_routing'
           AND (qual IS NULL OR with_check IS NULL
               OR qual NOT LIKE '%wasit_current_tenant()%'
               OR with_check NOT LIKE '%wasit_current_tenant()%')",
    )
    .fetch_all(admin)
    .await
    .unwrap();
    assert!(
        weak.is_empty(),
        "policies not bound to the current tenant: {weak:?}"
    );

    // SECURITY DEFINER functions pin search_path and are not executable by PUBLIC.
    let definers: Vec<(String, Option<Vec<String>>, bool)> = sqlx::query_as(
        "SELECT p.proname::text, p.proconfig::text[],
                has_function_privilege('public', p.oid, 'EXECUTE')
                  OR EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                             WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = 'public' AND p.prosecdef",
    )
    .fetch_all(admin)
    .await
    .unwrap();
    assert!(definers.len() >= 2, "{definers:?}");
    for (name, config, public) in &definers {
        let pinned = config
            .iter()
            .flatten()
            .any(|c| c.starts_with("search_path="));
        assert!(
            pinned,
            "{name}: SECURITY DEFINER without a fixed search_path"
        );
        assert!(!public, "{name}: executable by PUBLIC");
    }

    let owned: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND pg_get_userbyid(c.relowner) = 'wasit_app'",
    )
    .fetch_all(admin)
    .await
    .unwrap();
    assert!(owned.is_empty(), "wasit_app owns {owned:?}");
    let (superuser, bypass): (bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = 'wasit_app'")
            .fetch_one(admin)
            .await
            .unwrap();
    assert!(
        !superuser && !bypass,
        "wasit_app must be neither superuser nor BYPASSRLS"
    );

    // And the application pool really runs as that role.
    let who: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&t.db().app)
        .await
        .unwrap();
    assert_eq!(who, "wasit_app");
}

async fn seed(t: &TestDb) -> (TenantId, TenantId) {
    let a = t.tenant("tenant-a").await;
    let b = t.tenant("tenant-b").await;
    for i in 0..3 {
        t.user(a, &format!("a{i}@a.io"), Role::SalesRep, "password-a")
            .await;
    }
    for i in 0..5 {
        t.user(b, &format!("b{i}@b.io"), Role::SalesRep, "password-b")
            .await;
    }
    (a, b)
}

/// With no tenant set, the application sees no rows, also on a connection that a tenant
/// transaction has just used (the setting is transaction-local and does not leak).
#[tokio::test]
async fn without_a_tenant_no_rows_are_visible() {
    let t = TestDb::new().await;
    let (a, _) = seed(&t).await;
    let pool: PgPool = app_pool_options()
        .max_connections(1)
        .connect(&t.url)
        .await
        .unwrap();

    let mut tx = begin_tenant(&pool, a).await.unwrap();
    let inside: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(inside, 3);

    // Same single connection, no tenant.
    let outside: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(outside, 0);
    let tenants: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(tenants, 0);
    // An insert without a tenant is refused by the policy.
    let insert = sqlx::query("INSERT INTO contacts (tenant_id) VALUES ($1)")
        .bind(a)
        .execute(&pool)
        .await
        .expect_err("insert without a tenant must fail");
    assert!(
        insert.to_string().contains("row-level security"),
        "{insert}"
    );
}

/// A transaction for tenant A cannot read, update, delete or insert tenant B's rows.
#[tokio::test]
async fn tenant_a_cannot_touch_tenant_b() {
    let t = TestDb::new().await;
    let (a, b) = seed(&t).await;
    let app = &t.db().app;

    let mut tx = begin_tenant(app, a).await.unwrap();
    let seen: Vec<TenantId> = sqlx::query_scalar("SELECT tenant_id FROM users")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|t| *t == a));
    // Even naming B explicitly finds nothing.
    let named: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE tenant_id = $1")
        .bind(b)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(named, 0);
    let updated = sqlx::query("UPDATE users SET display_name = 'pwned' WHERE tenant_id = $1")
        .bind(b)
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(updated.rows_affected(), 0);
    let deleted = sqlx::query("DELETE FROM users WHERE tenant_id = $1")
        .bind(b)
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(deleted.rows_affected(), 0);
    tx.commit().await.unwrap();

    // Inserting a row that claims tenant B from inside A's transaction violates the policy.
    let mut tx = begin_tenant(app, a).await.unwrap();
    let err = sqlx::query("INSERT INTO contacts (tenant_id, display_name) VALUES ($1, 'spy')")
        .bind(b)
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("row-level security"), "{err}");
    drop(tx);

    let mut tx = begin_tenant(app, b).await.unwrap();
    let untouched: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users WHERE display_name IS NULL")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    assert_eq!(untouched, 5);
    let spies: i64 = sqlx::query_scalar("SELECT count(*) FROM contacts")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(spies, 0);
}

/// 1,000 interleaved requests for two tenants over a pool of two connections: every request sees
/// exactly its own tenant's rows, never the other's.
#[tokio::test]
async fn interleaved_requests_on_pooled_connections_never_mix_tenants() {
    let t = TestDb::new().await;
    let (a, b) = seed(&t).await;
    let pool: PgPool = app_pool_options()
        .max_connections(2)
        .connect(&t.url)
        .await
        .unwrap();

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let pool = pool.clone();
        let (tenant, expected) = if i % 2 == 0 { (a, 3) } else { (b, 5) };
        tasks.spawn(async move {
            let mut tx = begin_tenant(&pool, tenant).await.unwrap();
            let seen: Vec<TenantId> = sqlx::query_scalar("SELECT tenant_id FROM users")
                .fetch_all(&mut *tx)
                .await
                .unwrap();
            // Every third request ends in a rollback rather than a commit: neither may leak.
            if i % 3 == 0 {
                tx.rollback().await.unwrap();
            } else {
                tx.commit().await.unwrap();
            }
            assert_eq!(
                seen.len(),
                expected,
                "request {i} for {tenant} saw {} rows",
                seen.len()
            );
            assert!(
                seen.iter().all(|s| *s == tenant),
                "request {i} saw another tenant's rows"
            );
            // Outside any transaction, on whatever connection comes next, nothing is visible.
            let leaked: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
                .fetch_one(&pool)
                .await
                .unwrap();
            assert_eq!(
                leaked, 0,
                "request {i}: tenant setting leaked past its transaction"
            );
        });
    }
    let mut done = 0;
    while let Some(result) = tasks.join_next().await {
        result.unwrap();
        done += 1;
    }
    assert_eq!(done, 1000);
}

/// The routing functions reveal a tenant id only for an exact slug or channel address.
#[tokio::test]
async fn routing_functions_resolve_only_exact_matches() {
    let t = TestDb::new().await;
    let (a, _) = seed(&t).await;
    let app = &t.db().app;
    let slug = runtime::TenantSlug::parse("tenant-a").unwrap();
    assert_eq!(
        runtime::db::tenant_id_by_slug(app, &slug).await.unwrap(),
        Some(a)
    );
    let missing = runtime::TenantSlug::parse("tenant-z").unwrap();
    assert_eq!(
        runtime::db::tenant_id_by_slug(app, &missing).await.unwrap(),
        None
    );

    let mut tx = begin_tenant(app, a).await.unwrap();
    api::repo::channels::add(
        &mut tx,
        "whatsapp",
        "106540352242922",
        None,
        &serde_json::json!({}),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        runtime::db::tenant_id_by_channel(app, "whatsapp", "106540352242922")
            .await
            .unwrap(),
        Some(a)
    );
    assert_eq!(
        runtime::db::tenant_id_by_channel(app, "sms", "106540352242922")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        runtime::db::tenant_id_by_channel(app, "whatsapp", "1065403522429")
            .await
            .unwrap(),
        None
    );
}

/// With a table owner that is neither superuser nor BYPASSRLS (as on managed PostgreSQL), the
/// routing functions still resolve across tenants, while the application role still sees only
/// its tenant.
#[tokio::test]
async fn routing_works_with_an_ordinary_owner_role() {
    use sqlx::Connection;
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (role, name) = (
        format!("wasit_owner_{suffix}"),
        format!("wasit_test_{suffix}"),
    );
    let mut admin = sqlx::PgConnection::connect(&crate::helpers::server_url())
        .await
        .unwrap();
    for sql in [
        format!("CREATE ROLE {role} LOGIN CREATEROLE NOSUPERUSER NOBYPASSRLS"),
        format!("CREATE DATABASE {name} OWNER {role}"),
    ] {
        sqlx::query(&sql).execute(&mut admin).await.unwrap();
    }
    let mut url = url::Url::parse(&crate::helpers::database_url(&name)).unwrap();
    url.set_username(&role).unwrap();
    let db = runtime::db::Database::connect(url.as_str(), None, None)
        .await
        .unwrap();
    db.migrate().await.unwrap();

    let slug = runtime::TenantSlug::parse("owner-test").unwrap();
    let tenant = api::repo::tenants::create(&db.admin, &slug, "Owner test")
        .await
        .unwrap()
        .id;
    let mut tx = begin_tenant(&db.app, tenant).await.unwrap();
    api::repo::channels::add(
        &mut tx,
        "whatsapp",
        "555000111",
        None,
        &serde_json::json!({}),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        runtime::db::tenant_id_by_slug(&db.app, &slug)
            .await
            .unwrap(),
        Some(tenant)
    );
    assert_eq!(
        runtime::db::tenant_id_by_channel(&db.app, "whatsapp", "555000111")
            .await
            .unwrap(),
        Some(tenant)
    );
    // The application role gained nothing.
    let visible: i64 = sqlx::query_scalar("SELECT count(*) FROM channel_accounts")
        .fetch_one(&db.app)
        .await
        .unwrap();
    assert_eq!(visible, 0);

    db.close().await;
    for sql in [
        format!("DROP DATABASE {name} WITH (FORCE)"),
        format!("DROP ROLE {role}"),
    ] {
        sqlx::query(&sql).execute(&mut admin).await.unwrap();
    }
}
