-- The knowledge base: articles and their chunks, the source of truth of the vector index (which is
-- derived from them and can be rebuilt at any time), and the indexes' own bookkeeping.
--
-- Global articles (shared by every tenant) belong to a reserved pseudo-tenant, `global`, with a
-- fixed id: the tables keep the one tenant_isolation policy, and writing or reading global
-- articles is a transaction scoped to that tenant like any other. Retrieval filters the index to
-- {the tenant, global}; nobody logs in to `global` (it has no users).

SELECT set_config('app.tenant_id', '00000000-0000-0000-0000-00000000000b', true);
INSERT INTO tenants (id, slug, name)
VALUES ('00000000-0000-0000-0000-00000000000b', 'global', 'Global knowledge base')
ON CONFLICT DO NOTHING;
SELECT set_config('app.tenant_id', '', true);

CREATE FUNCTION wasit_global_tenant() RETURNS uuid
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT '00000000-0000-0000-0000-00000000000b'::uuid $$;

-- Nobody logs in to, or receives messages for, the global pseudo-tenant.
ALTER TABLE users ADD CONSTRAINT users_not_global CHECK (tenant_id <> '00000000-0000-0000-0000-00000000000b');
ALTER TABLE channel_accounts ADD CONSTRAINT channel_accounts_not_global
    CHECK (tenant_id <> '00000000-0000-0000-0000-00000000000b');

CREATE TABLE articles (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- Where it came from: the path below the ingested directory (`pricing/price-lock.md`), or
    -- `api:<id>` for an article written through the REST API. Ingestion matches files by it.
    source              text NOT NULL CHECK (length(source) BETWEEN 1 AND 500),
    title               text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    language            text NOT NULL CHECK (language ~ '^[a-z]{2,3}(-[A-Za-z0-9]{2,4})?$'),
    tags                text[] NOT NULL DEFAULT '{}',
    sector              text CHECK (length(sector) BETWEEN 1 AND 200),
    body                text NOT NULL CHECK (length(body) BETWEEN 1 AND 200000),
    -- SHA-256 of the article's bytes (front matter and body), hex.
    content_hash        text NOT NULL CHECK (content_hash ~ '^[0-9a-f]{64}$'),
    -- What the index holds of it: the content hash and the index generation it was written to
    -- (both set only after the index made the write durable). An article whose pair differs
    -- from (content_hash, the index's generation), or that is deleted, is (re)indexed at start.
    indexed_hash        text,
    indexed_generation  uuid,
    -- Bumped by every write and delete: marking an article indexed names the revision that was
    -- written, so a write racing a sync leaves it stale rather than wrongly marked.
    revision            bigint NOT NULL DEFAULT 0,
    -- Deleted, but still in the index: the row goes once the index has dropped its chunks.
    deleted_at          timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    UNIQUE (tenant_id, source)
);
CREATE INDEX articles_recent ON articles (tenant_id, updated_at DESC, id DESC) WHERE deleted_at IS NULL;

CREATE TABLE article_chunks (
    -- Also the point's id in the vector index.
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL,
    article_id    uuid NOT NULL,
    ordinal       integer NOT NULL CHECK (ordinal >= 0),
    heading_path  text[] NOT NULL DEFAULT '{}',
    text          text NOT NULL CHECK (length(text) >= 1),
    tokens        integer NOT NULL CHECK (tokens >= 0),
    -- Detected on the chunk: ar, en, mixed or unknown.
    language      text NOT NULL CHECK (language IN ('ar', 'en', 'mixed', 'unknown')),
    -- Index terms after analysis (BM25's document length).
    term_count    integer NOT NULL CHECK (term_count >= 0),
    UNIQUE (tenant_id, article_id, ordinal),
    FOREIGN KEY (tenant_id, article_id) REFERENCES articles (tenant_id, id) ON DELETE CASCADE
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['articles', 'article_chunks'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = wasit_current_tenant()) '
                       'WITH CHECK (tenant_id = wasit_current_tenant())', t);
    END LOOP;
END
$$;
GRANT SELECT, INSERT, UPDATE, DELETE ON articles, article_chunks TO wasit_app;

-- On a managed server whose owner role does not bypass RLS, the SECURITY DEFINER functions below
-- (run as the owner) would see no rows: let the owner role — only it, never wasit_app — read
-- these tables (as 20261126000005_owner_routing.sql does for the routing tables).
DO $$
DECLARE
    t text;
BEGIN
    IF (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user) THEN
        RETURN;
    END IF;
    FOREACH t IN ARRAY ARRAY['articles', 'article_chunks'] LOOP
        EXECUTE format('CREATE POLICY owner_routing ON %I FOR SELECT TO %I USING (true)', t, current_user);
    END LOOP;
END
$$;

-- The vector indexes this database has fed (the embedded one under a data dir, a Qdrant server's
-- collection), each with its generation: a new one whenever the index is created or rebuilt, so
-- every article is written to it again. Not tenant data: no tenant_id, no content.
CREATE TABLE kb_indexes (
    name         text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 500),
    generation   uuid NOT NULL,
    -- The collection's average document length in index terms when it was built (BM25 needs
    -- the real one; a rebuild measures it again).
    avg_len      real NOT NULL CHECK (avg_len > 0),
    created_at   timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE ON kb_indexes TO wasit_app;

-- Articles the index `p_generation` lacks or holds stale, across tenants: ids only.
CREATE FUNCTION wasit_articles_to_index(p_generation uuid)
    RETURNS TABLE (tenant_id uuid, article_id uuid)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT a.tenant_id, a.id FROM articles a
        WHERE a.deleted_at IS NOT NULL
           OR a.indexed_generation IS DISTINCT FROM p_generation
           OR a.indexed_hash IS DISTINCT FROM a.content_hash
        ORDER BY a.tenant_id, a.id
    $$;
REVOKE ALL ON FUNCTION wasit_articles_to_index(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wasit_articles_to_index(uuid) TO wasit_app;

-- The average document length (index terms per chunk) over every live chunk: a number only.
CREATE FUNCTION wasit_kb_average_terms() RETURNS real
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT avg(c.term_count)::real FROM article_chunks c
        JOIN articles a ON a.tenant_id = c.tenant_id AND a.id = c.article_id
        WHERE a.deleted_at IS NULL
    $$;
REVOKE ALL ON FUNCTION wasit_kb_average_terms() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wasit_kb_average_terms() TO wasit_app;

-- Whether any article was last indexed into another generation than p_generation: then an index
-- of that generation has missed deletions (another index was fed meanwhile) and is rebuilt.
CREATE FUNCTION wasit_kb_other_generations(p_generation uuid) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT EXISTS (SELECT 1 FROM articles a
                       WHERE a.indexed_generation IS NOT NULL AND a.indexed_generation <> p_generation)
    $$;
REVOKE ALL ON FUNCTION wasit_kb_other_generations(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wasit_kb_other_generations(uuid) TO wasit_app;
