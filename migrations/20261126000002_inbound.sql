-- Inbound processing: delivery-status events and the forward-only status order.

-- sent < delivered < read; `queued` (ours, before the provider accepted) comes first. `failed` and
-- `window_closed` are outside the order: they never overwrite delivered or read.
CREATE FUNCTION wasit_status_rank(status text) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE status WHEN 'queued' THEN 0 WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2
                             WHEN 'read' THEN 3 ELSE NULL END $$;

-- Every status notification, kept even when it arrives before we know the message it belongs to
-- (a status can overtake the send's own response). Applied to `messages` when both are known.
CREATE TABLE message_statuses (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id            uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    channel              text NOT NULL CHECK (channel IN ('whatsapp', 'sms', 'email')),
    provider_message_id  text NOT NULL,
    status               text NOT NULL CHECK (status IN ('sent', 'delivered', 'read', 'failed')),
    provider_timestamp   timestamptz,
    errors               jsonb,
    payload              jsonb NOT NULL DEFAULT '{}'::jsonb,
    received_at          timestamptz NOT NULL DEFAULT now(),
    -- Providers repeat status notifications: one row per (message, status).
    UNIQUE (tenant_id, channel, provider_message_id, status)
);

ALTER TABLE message_statuses ENABLE ROW LEVEL SECURITY;
ALTER TABLE message_statuses FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON message_statuses
    USING (tenant_id = wasit_current_tenant()) WITH CHECK (tenant_id = wasit_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON message_statuses TO wasit_app;

-- Contact merges (a later payload carrying both a phone and a BSUID that were known apart) leave
-- a record, so what happened to the second contact can be explained.
CREATE TABLE contact_merges (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kept_contact_id  uuid NOT NULL,
    merged_contact_id uuid NOT NULL,
    reason           text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX contact_merges_kept ON contact_merges (tenant_id, kept_contact_id);

ALTER TABLE contact_merges ENABLE ROW LEVEL SECURITY;
ALTER TABLE contact_merges FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON contact_merges
    USING (tenant_id = wasit_current_tenant()) WITH CHECK (tenant_id = wasit_current_tenant());
GRANT SELECT, INSERT ON contact_merges TO wasit_app;
