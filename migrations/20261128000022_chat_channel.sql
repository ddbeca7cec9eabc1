-- `wasit chat`: the terminal is a channel like the others. A prompt engineer's messages are
-- stored, answered and sent through the same tables and the same turn as a WhatsApp contact's;
-- the channel account's address is the tenant's slug, and the contact is known by the name given
-- with `--contact` (identity kind `chat`).
ALTER TABLE channel_accounts DROP CONSTRAINT channel_accounts_channel_check,
    ADD CONSTRAINT channel_accounts_channel_check CHECK (channel IN ('whatsapp', 'sms', 'email', 'chat'));
ALTER TABLE conversations DROP CONSTRAINT conversations_channel_check,
    ADD CONSTRAINT conversations_channel_check CHECK (channel IN ('whatsapp', 'sms', 'email', 'chat'));
ALTER TABLE messages DROP CONSTRAINT messages_channel_check,
    ADD CONSTRAINT messages_channel_check CHECK (channel IN ('whatsapp', 'sms', 'email', 'chat'));
ALTER TABLE outbox DROP CONSTRAINT outbox_channel_check,
    ADD CONSTRAINT outbox_channel_check CHECK (channel IN ('whatsapp', 'sms', 'email', 'chat'));
ALTER TABLE contact_identities DROP CONSTRAINT contact_identities_kind_check,
    ADD CONSTRAINT contact_identities_kind_check CHECK (kind IN ('phone', 'whatsapp_bsuid', 'email', 'chat'));
