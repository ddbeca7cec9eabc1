-- Meetings with reps: working hours per rep (in the rep's time zone) and bookings that cannot
-- overlap — an exclusion constraint, not a read-then-write check, so two concurrent bookings of
-- one slot cannot both succeed.

CREATE EXTENSION IF NOT EXISTS btree_gist;

-- One row per weekday a rep works; several rows a day for split shifts. Weekday: ISO, 1 = Monday
-- … 7 = Sunday. Times are wall-clock times in time_zone (an IANA name, e.g. Asia/Riyadh).
CREATE TABLE rep_working_hours (
    tenant_id   uuid NOT NULL,
    user_id     uuid NOT NULL,
    weekday     smallint NOT NULL CHECK (weekday BETWEEN 1 AND 7),
    starts      time NOT NULL,
    ends        time NOT NULL CHECK (ends > starts),
    time_zone   text NOT NULL,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE,
    EXCLUDE USING gist (tenant_id WITH =, user_id WITH =, weekday WITH =,
                        tsrange('2000-01-01'::date + starts, '2000-01-01'::date + ends) WITH &&)
);
CREATE INDEX rep_working_hours_user ON rep_working_hours (tenant_id, user_id);

CREATE TABLE meetings (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    rep_user_id     uuid NOT NULL,
    contact_id      uuid,
    lead_id         uuid,
    deal_id         uuid,
    title           text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    location        text CHECK (length(location) <= 500),
    starts_at       timestamptz NOT NULL,
    ends_at         timestamptz NOT NULL,
    status          text NOT NULL DEFAULT 'scheduled' CHECK (status IN ('scheduled', 'cancelled')),
    -- Bumped on every change: the .ics SEQUENCE, so calendars take the newest version.
    sequence        integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    CHECK (ends_at > starts_at AND ends_at - starts_at <= interval '12 hours'),
    FOREIGN KEY (tenant_id, rep_user_id) REFERENCES users (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts (tenant_id, id) ON DELETE SET NULL (contact_id),
    FOREIGN KEY (tenant_id, lead_id) REFERENCES leads (tenant_id, id) ON DELETE SET NULL (lead_id),
    FOREIGN KEY (tenant_id, deal_id) REFERENCES deals (tenant_id, id) ON DELETE SET NULL (deal_id),
    -- A rep is in one meeting at a time; a cancelled meeting frees its slot.
    CONSTRAINT meetings_no_double_booking EXCLUDE USING gist (
        tenant_id WITH =, rep_user_id WITH =, tstzrange(starts_at, ends_at) WITH &&)
        WHERE (status = 'scheduled')
);
CREATE INDEX meetings_rep_time ON meetings (tenant_id, rep_user_id, starts_at);
CREATE INDEX meetings_time ON meetings (tenant_id, starts_at, id);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['rep_working_hours', 'meetings'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = wasit_current_tenant()) '
                       'WITH CHECK (tenant_id = wasit_current_tenant())', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO wasit_app', t);
    END LOOP;
END
$$;
