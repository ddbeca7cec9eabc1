-- One way to record a turn, for a conversation's turn (runtime::turn::commit) and a background
-- agent's turn on a CRM event (runtime::events) alike: the audit row, the model usage of the day
-- (a sharded counter, so concurrent turns do not queue on one row) and the prompt file's version,
-- each written once. Exactly one of p_conversation and p_event is set (ai_conversations_subject).
-- Runs as the caller, inside the caller's tenant transaction: row-level security applies.
CREATE FUNCTION wasit_record_turn(
    p_conversation   uuid,
    p_event          uuid,
    p_turn_seq       bigint,
    p_agent          text,
    p_prompt_version text,
    p_model          text,
    p_tokens_in      integer,
    p_tokens_out     integer,
    p_latency_ms     integer,
    p_tool_calls     jsonb,
    p_outcome        jsonb,
    p_calls          bigint,
    p_cost_micros    bigint,
    p_prompt_path    text,
    p_prompt_body    text)
    RETURNS void LANGUAGE sql SECURITY INVOKER AS $$
    INSERT INTO ai_conversations (tenant_id, conversation_id, event_id, turn_seq, agent, prompt_version,
                                  model, tokens_in, tokens_out, latency_ms, tool_calls, outcome)
    VALUES (wasit_current_tenant(), p_conversation, p_event, p_turn_seq, p_agent, p_prompt_version,
            p_model, p_tokens_in, p_tokens_out, p_latency_ms, p_tool_calls, p_outcome);
    -- The prompt's bytes once per version; a turn without a prompt file (a fallback) has none.
    INSERT INTO prompt_versions (tenant_id, version, agent, path, body)
    SELECT wasit_current_tenant(), p_prompt_version, p_agent, p_prompt_path, p_prompt_body
    WHERE p_prompt_body IS NOT NULL
    ON CONFLICT (tenant_id, version) DO NOTHING;
    INSERT INTO llm_usage AS u (tenant_id, day, agent, model, shard, calls, tokens_in, tokens_out, cost_micros)
    SELECT wasit_current_tenant(), (now() AT TIME ZONE 'UTC')::date, p_agent, p_model,
           floor(random() * 16)::smallint, p_calls, p_tokens_in, p_tokens_out, p_cost_micros
    WHERE p_calls > 0
    ON CONFLICT (tenant_id, day, agent, model, shard) DO UPDATE
        SET calls = u.calls + excluded.calls, tokens_in = u.tokens_in + excluded.tokens_in,
            tokens_out = u.tokens_out + excluded.tokens_out,
            cost_micros = u.cost_micros + excluded.cost_micros;
$$;
REVOKE ALL ON FUNCTION wasit_record_turn(uuid, uuid, bigint, text, text, text, integer, integer,
    integer, jsonb, jsonb, bigint, bigint, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wasit_record_turn(uuid, uuid, bigint, text, text, text, integer, integer,
    integer, jsonb, jsonb, bigint, bigint, text, text) TO wasit_app;
