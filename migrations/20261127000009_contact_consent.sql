-- Consent per contact and channel. A contact who opted out of a channel is never messaged
-- proactively on it (follow-ups, campaigns); replies inside a conversation the contact started
-- are not proactive. No row means nothing was recorded: the tenant's default policy applies.

CREATE TABLE contact_consents (
    tenant_id   uuid NOT NULL,
    contact_id  uuid NOT NULL,
    channel     text NOT NULL CHECK (channel IN ('whatsapp', 'sms', 'email')),
    status      text NOT NULL CHECK (status IN ('granted', 'opted_out')),
    -- Where it was recorded: 'api', 'inbound_keyword', 'import', ...
    source      text NOT NULL CHECK (length(source) BETWEEN 1 AND 50),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, contact_id, channel),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts (tenant_id, id) ON DELETE CASCADE
);
ALTER TABLE contact_consents ENABLE ROW LEVEL SECURITY;
ALTER TABLE contact_consents FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON contact_consents USING (tenant_id = wasit_current_tenant())
    WITH CHECK (tenant_id = wasit_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON contact_consents TO wasit_app;

-- Contact lists: newest first, and a name search.
CREATE INDEX contacts_recent ON contacts (tenant_id, created_at DESC, id DESC);
