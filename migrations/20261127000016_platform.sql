-- The platform view for superadmins: the one application role that may read across tenants.
-- wasit_platform bypasses row-level security, may only read (the counts it reports) and append
-- to its own audit trail; nobody logs in as it. The owner role (migrations, operator commands)
-- becomes a member so that the server's platform pool can SET ROLE to it; wasit_app is not a
-- member and cannot.

-- Creating a BYPASSRLS role needs a superuser. On a managed server whose owner role is not one,
-- the platform view stays off (its route cannot connect) and the rest migrates normally.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'wasit_platform') THEN
        CREATE ROLE wasit_platform NOLOGIN BYPASSRLS;
    END IF;
    EXECUTE format('GRANT wasit_platform TO %I', current_user);
    GRANT USAGE ON SCHEMA public TO wasit_platform;
    GRANT SELECT ON tenants, users, contacts, conversations, messages, leads, deals TO wasit_platform;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'wasit_platform was not created (%): the platform view is off', SQLERRM;
END
$$;

-- Every platform call, with who made it.
CREATE TABLE platform_audit (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    actor_subject  text NOT NULL,
    -- The tenant the superadmin's token was issued in.
    actor_tenant   uuid NOT NULL,
    action         text NOT NULL,
    details        jsonb NOT NULL DEFAULT '{}',
    at             timestamptz NOT NULL DEFAULT now()
);
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'wasit_platform') THEN
        GRANT SELECT, INSERT ON platform_audit TO wasit_platform;
    END IF;
END
$$;
