-- Foundation schema: tenants, users, contacts and their channel identities, channel accounts,
-- conversations, messages, the outbox, the AI-turn audit, dead letters and unroutable events.
--
-- Tenancy rules that every later migration follows:
--   * every tenant-scoped table has `tenant_id uuid NOT NULL`, row-level security ENABLED and
--     FORCED, and the policy `tenant_isolation` comparing it with wasit_current_tenant();
--   * every index and every deduplicating UNIQUE constraint leads with tenant_id;
--   * the application runs as `wasit_app`, which owns nothing and has no BYPASSRLS; it receives
--     explicit grants per table here, never ALL TABLES;
--   * views are created WITH (security_invoker = true).

-- The application role. Roles are cluster-wide, so several databases (and concurrent test
-- databases) share it: two migrations racing to create it must both succeed, hence the exception
-- handlers (an advisory lock would not do: those are per database).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'wasit_app') THEN
        BEGIN
            CREATE ROLE wasit_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
    -- The app pool may connect as the migrating role and switch to wasit_app with SET ROLE; a
    -- superuser may do that already, any other role needs membership.
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        BEGIN
            EXECUTE format('GRANT wasit_app TO %I', current_user);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO wasit_app;

-- The tenant of the current transaction, or NULL when none is set. After a transaction that set
-- it ends, current_setting(..., true) is '' rather than NULL: NULLIF makes that fail closed.
CREATE FUNCTION wasit_current_tenant() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid $$;

-- ---------------------------------------------------------------------------------------------
-- Tenants
-- ---------------------------------------------------------------------------------------------
CREATE TABLE tenants (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z][a-z0-9-]{0,61}[a-z0-9]$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- Per-tenant runtime policy (debounce window, idle passivation, …); typed in code.
    settings    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
    USING (id = wasit_current_tenant()) WITH CHECK (id = wasit_current_tenant());
GRANT SELECT, UPDATE ON tenants TO wasit_app;

-- Resolving a tenant before one is known: at login (by slug) and for webhooks (by the receiving
-- channel address). SECURITY DEFINER with a fixed search_path; they reveal only the id.
CREATE FUNCTION wasit_tenant_id_by_slug(p_slug text) RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$ SELECT id FROM tenants WHERE slug = p_slug $$;
REVOKE ALL ON FUNCTION wasit_tenant_id_by_slug(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wasit_tenant_id_by_slug(text) TO wasit_app;

-- ---------------------------------------------------------------------------------------------
-- Users (people who log in)
-- ---------------------------------------------------------------------------------------------
CREATE TABLE users (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    email          text NOT NULL CHECK (email = lower(email) AND position('@' IN email) > 1),
    display_name   text,
    role           text NOT NULL CHECK (role IN ('superadmin', 'admin', 'sales_manager', 'sales_rep',
                                                 'prompt_engineer', 'affiliate')),
    -- PHC string (argon2id); never returned by the API.
    password_hash  text,
    disabled_at    timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, email),
    UNIQUE (tenant_id, id)
);

-- ---------------------------------------------------------------------------------------------
-- Contacts and their channel identities
-- ---------------------------------------------------------------------------------------------
CREATE TABLE contacts (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    display_name  text,
    -- BCP 47 tag detected or stated (`ar`, `ar-SA`, `en`); Arabic first.
    locale        text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id)
);

-- One row per way of reaching a contact. A WhatsApp contact may be known by phone (`wa_id`), by
-- business-scoped user id (BSUID), or both; a later payload carrying both merges them.
CREATE TABLE contact_identities (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL,
    contact_id  uuid NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('phone', 'whatsapp_bsuid', 'email')),
    value       text NOT NULL CHECK (length(value) BETWEEN 1 AND 320),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, kind, value),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX contact_identities_contact ON contact_identities (tenant_id, contact_id);

-- ---------------------------------------------------------------------------------------------
-- Channel accounts: which business number / address belongs to which tenant
-- ---------------------------------------------------------------------------------------------
CREATE TABLE channel_accounts (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    channel       text NOT NULL CHECK (channel IN ('whatsapp', 'sms', 'email')),
    -- WhatsApp: phone_number_id; SMS: the E.164 number; email: the receiving address.
    address       text NOT NULL CHECK (length(address) BETWEEN 1 AND 320),
    display_name  text,
    -- Provider credentials (access token, account sid and auth token, …).
    credentials   jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- An address routes to exactly one tenant, across all tenants.
    UNIQUE (channel, address),
    UNIQUE (tenant_id, id)
);
CREATE INDEX channel_accounts_tenant ON channel_accounts (tenant_id, channel);

CREATE FUNCTION wasit_tenant_id_by_channel(p_channel text, p_address text) RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$ SELECT tenant_id FROM channel_accounts WHERE channel = p_channel AND address = p_address $$;
REVOKE ALL ON FUNCTION wasit_tenant_id_by_channel(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wasit_tenant_id_by_channel(text, text) TO wasit_app;

-- ---------------------------------------------------------------------------------------------
-- Conversations and messages
-- ---------------------------------------------------------------------------------------------
CREATE TABLE conversations (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL,
    contact_id          uuid NOT NULL,
    -- The channel the contact last wrote on; replies go out on it.
    channel             text NOT NULL CHECK (channel IN ('whatsapp', 'sms', 'email')),
    channel_account_id  uuid,
    status              text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'escalated', 'closed')),
    active_agent        text NOT NULL DEFAULT 'sales',
    -- A human rep who has taken the conversation over; while set, no agent sends anything.
    owner_user_id       uuid,
    needs_human         boolean NOT NULL DEFAULT false,
    turn_seq            bigint NOT NULL DEFAULT 0,
    last_inbound_at     timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    -- One conversation per contact: the conversation actor is keyed by (tenant, contact).
    UNIQUE (tenant_id, contact_id),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, channel_account_id) REFERENCES channel_accounts (tenant_id, id),
    FOREIGN KEY (tenant_id, owner_user_id) REFERENCES users (tenant_id, id)
);
CREATE INDEX conversations_status ON conversations (tenant_id, status, updated_at DESC);

CREATE TABLE messages (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id            uuid NOT NULL,
    conversation_id      uuid NOT NULL,
    -- Arrival order within the whole system; turns read messages in this order.
    seq                  bigint GENERATED ALWAYS AS IDENTITY,
    direction            text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    channel              text NOT NULL CHECK (channel IN ('whatsapp', 'sms', 'email')),
    -- The provider's id (wamid…, MessageSid, Message-ID); the deduplication key for inbound.
    provider_message_id  text,
    kind                 text NOT NULL CHECK (kind IN ('text', 'image', 'video', 'audio', 'document',
                             'sticker', 'location', 'contacts', 'reaction', 'interactive', 'button',
                             'flow_reply', 'template', 'email', 'unsupported')),
    body                 text,
    -- The provider's message object as received or sent, for what `body` does not capture.
    payload              jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- Outbound: queued < sent < delivered < read (only forward); failed separately.
    status               text NOT NULL DEFAULT 'received' CHECK (status IN ('received', 'queued',
                             'sent', 'delivered', 'read', 'failed', 'window_closed')),
    error                jsonb,
    -- Inbound: set when the turn that answered it committed. Unset rows are redelivered on start.
    processed_at         timestamptz,
    provider_timestamp   timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, channel, provider_message_id),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversations (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX messages_conversation ON messages (tenant_id, conversation_id, seq);
CREATE INDEX messages_unprocessed ON messages (tenant_id, seq)
    WHERE direction = 'inbound' AND processed_at IS NULL;

-- ---------------------------------------------------------------------------------------------
-- The outbox: every side effect towards a provider, sent at least once, recognised by its key
-- ---------------------------------------------------------------------------------------------
CREATE TABLE outbox (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id            uuid NOT NULL,
    message_id           uuid,
    channel              text NOT NULL CHECK (channel IN ('whatsapp', 'sms', 'email')),
    -- Derived from (conversation, turn, sequence): the same effect always has the same key.
    idempotency_key      text NOT NULL,
    payload              jsonb NOT NULL,
    state                text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed',
                             'window_closed')),
    attempts             integer NOT NULL DEFAULT 0,
    next_attempt_at      timestamptz NOT NULL DEFAULT now(),
    last_error           text,
    provider_message_id  text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    sent_at              timestamptz,
    UNIQUE (tenant_id, idempotency_key),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, message_id) REFERENCES messages (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX outbox_due ON outbox (tenant_id, next_attempt_at) WHERE state = 'pending';

-- ---------------------------------------------------------------------------------------------
-- Audit of every AI turn
-- ---------------------------------------------------------------------------------------------
CREATE TABLE ai_conversations (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        uuid NOT NULL,
    conversation_id  uuid NOT NULL,
    turn_seq         bigint NOT NULL,
    agent            text NOT NULL,
    -- Hash of the prompt file's bytes that produced this turn.
    prompt_version   text NOT NULL,
    model            text NOT NULL,
    tokens_in        integer NOT NULL DEFAULT 0 CHECK (tokens_in >= 0),
    tokens_out       integer NOT NULL DEFAULT 0 CHECK (tokens_out >= 0),
    latency_ms       integer NOT NULL DEFAULT 0 CHECK (latency_ms >= 0),
    tool_calls       jsonb NOT NULL DEFAULT '[]'::jsonb,
    outcome          jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, conversation_id, turn_seq),
    FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversations (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX ai_conversations_recent ON ai_conversations (tenant_id, created_at DESC);

-- ---------------------------------------------------------------------------------------------
-- Dead letters: work that failed repeatedly, kept for a human
-- ---------------------------------------------------------------------------------------------
CREATE TABLE dead_letters (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    conversation_id  uuid,
    message_id       uuid,
    source           text NOT NULL,
    reason           text NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    payload          jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    resolved_at      timestamptz
);
CREATE INDEX dead_letters_open ON dead_letters (tenant_id, created_at DESC) WHERE resolved_at IS NULL;

-- ---------------------------------------------------------------------------------------------
-- Unroutable events: delivered to an address no tenant owns. No tenant, so no tenant_id; the
-- application may only add rows, operators read them.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE unroutable_events (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    channel      text NOT NULL,
    address      text,
    reason       text NOT NULL,
    payload      jsonb NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
GRANT INSERT ON unroutable_events TO wasit_app;

-- ---------------------------------------------------------------------------------------------
-- Row-level security and grants for every tenant-scoped table
-- ---------------------------------------------------------------------------------------------
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['users', 'contacts', 'contact_identities', 'channel_accounts',
                             'conversations', 'messages', 'outbox', 'ai_conversations',
                             'dead_letters']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = wasit_current_tenant()) '
                       'WITH CHECK (tenant_id = wasit_current_tenant())', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO wasit_app', t);
    END LOOP;
END
$$;
