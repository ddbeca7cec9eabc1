-- The forecaster: once a day, every tenant with open deals gets a `forecast_due` event carrying
-- the month's pipeline; the forecaster's estimate (`write_forecast`) is kept per period and
-- currency, newest first, and shown beside the weighted pipeline (GET /api/v1/deals/forecast).

ALTER TABLE agent_events DROP CONSTRAINT agent_events_agent_check,
    ADD CONSTRAINT agent_events_agent_check
        CHECK (agent IN ('scorer', 'router', 'deal_coach', 'forecaster'));
ALTER TABLE agent_events DROP CONSTRAINT agent_events_kind_check,
    ADD CONSTRAINT agent_events_kind_check
        CHECK (kind IN ('lead_updated', 'lead_qualified', 'lead_score_crossed', 'deal_stage_changed',
                        'forecast_due'));

CREATE TABLE forecasts (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- First day of the month forecast.
    period        date NOT NULL CHECK (extract(day FROM period) = 1),
    currency      text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    amount_minor  bigint NOT NULL CHECK (amount_minor >= 0),
    reasons       text NOT NULL CHECK (length(reasons) BETWEEN 1 AND 2000),
    agent         text NOT NULL,
    event_id      uuid,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, event_id) REFERENCES agent_events (tenant_id, id) ON DELETE SET NULL (event_id)
);
CREATE INDEX forecasts_period ON forecasts (tenant_id, period, currency, created_at DESC);

ALTER TABLE forecasts ENABLE ROW LEVEL SECURITY;
ALTER TABLE forecasts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON forecasts
    USING (tenant_id = wasit_current_tenant()) WITH CHECK (tenant_id = wasit_current_tenant());
GRANT SELECT, INSERT ON forecasts TO wasit_app;

-- Today's forecast event for every tenant with open deals (UTC day; once per tenant and day; the
-- 200 open deals closing soonest).
-- Runs as the owner to see every tenant, and writes each tenant's event as that tenant (row-level
-- security applies to the insert). Returns how many events it wrote.
CREATE FUNCTION wasit_schedule_forecasts() RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_tenant uuid;
    v_day date := (now() AT TIME ZONE 'UTC')::date;
    v_written integer := 0;
    v_rows integer;
BEGIN
    FOR v_tenant IN SELECT id FROM tenants ORDER BY id LOOP
        PERFORM set_config('app.tenant_id', v_tenant::text, true);
        INSERT INTO agent_events (tenant_id, agent, kind, detail, dedupe_key)
        SELECT v_tenant, 'forecaster', 'forecast_due',
               jsonb_build_object(
                   'period', to_char(v_day, 'YYYY-MM'),
                   'open_deals', jsonb_agg(jsonb_build_object(
                       'title', d.title, 'amount_minor', d.amount_minor, 'currency', d.currency,
                       'stage', s.name, 'probability', s.probability,
                       'expected_close_date', d.expected_close_date,
                       'coach_probability', d.win_probability)
                       ORDER BY d.expected_close_date NULLS LAST, d.amount_minor DESC)),
               'forecaster:' || v_day
        FROM (SELECT d.title, d.amount_minor, d.currency, d.expected_close_date, d.win_probability,
                     d.stage_id
              FROM deals d JOIN pipeline_stages ps ON ps.tenant_id = d.tenant_id AND ps.id = d.stage_id
              WHERE d.tenant_id = v_tenant AND ps.kind = 'open'
              ORDER BY d.expected_close_date NULLS LAST, d.amount_minor DESC
              LIMIT 200) d
        JOIN pipeline_stages s ON s.tenant_id = v_tenant AND s.id = d.stage_id
        HAVING count(*) > 0
        ON CONFLICT (tenant_id, dedupe_key) DO NOTHING;
        GET DIAGNOSTICS v_rows = ROW_COUNT;
        v_written := v_written + v_rows;
    END LOOP;
    RETURN v_written;
END
$$;
REVOKE ALL ON FUNCTION wasit_schedule_forecasts() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wasit_schedule_forecasts() TO wasit_app;
