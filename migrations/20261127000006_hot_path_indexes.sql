-- Outbox order as columns. A turn's replies must reach the contact in order: a row waits while an
-- earlier part of the same conversation is pending. The first version derived the order from the
-- idempotency key (`conversation:turn:part`) with split_part, which compared every pending row
-- with every other — quadratic in the backlog (two seconds per sweep with a few thousand pending
-- rows). The order now lives in indexed columns. Rows that are not part of a conversation (future
-- notifications, emails to users) leave them NULL and are never held back.

ALTER TABLE outbox
    ADD COLUMN conversation_id uuid,
    ADD COLUMN turn_seq        bigint,
    ADD COLUMN part            integer;

UPDATE outbox SET conversation_id = split_part(idempotency_key, ':', 1)::uuid,
                  turn_seq        = split_part(idempotency_key, ':', 2)::bigint,
                  part            = split_part(idempotency_key, ':', 3)::integer
WHERE idempotency_key ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}:[0-9]+:[0-9]+$';

ALTER TABLE outbox ADD CONSTRAINT outbox_order_complete
    CHECK ((conversation_id IS NULL) = (turn_seq IS NULL) AND (turn_seq IS NULL) = (part IS NULL));

-- The pending rows of one conversation, in order: what "is an earlier part pending?" reads.
CREATE INDEX outbox_pending_order ON outbox (tenant_id, conversation_id, turn_seq, part)
    WHERE state = 'pending';

-- Per-conversation questions must not be answered by scanning a whole tenant. Before a table's
-- first ANALYZE (a new database, the first minute of a new tenant's traffic) the planner rates
-- every small partial index alike, and it chose these tenant-wide ones, with the conversation as
-- a filter: each turn then read every pending row or unprocessed message of its tenant (20 ms
-- with a backlog of a few thousand). The per-tenant due index is not used (due rows are found
-- across tenants, outbox_due_global), and unprocessed messages are looked up by conversation.
DROP INDEX outbox_due;
DROP INDEX messages_unprocessed;
CREATE INDEX messages_unprocessed ON messages (tenant_id, conversation_id, seq)
    WHERE direction = 'inbound' AND processed_at IS NULL;

CREATE OR REPLACE FUNCTION wasit_due_outbox(p_limit integer) RETURNS TABLE (tenant_id uuid, id uuid)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT o.tenant_id, o.id FROM outbox o
        WHERE o.state = 'pending' AND o.next_attempt_at <= now()
          AND (o.conversation_id IS NULL OR NOT EXISTS (
              SELECT 1 FROM outbox e
              WHERE e.tenant_id = o.tenant_id AND e.conversation_id = o.conversation_id
                AND e.state = 'pending'
                AND (e.turn_seq, e.part) < (o.turn_seq, o.part)))
        ORDER BY o.next_attempt_at
        LIMIT p_limit
    $$;
