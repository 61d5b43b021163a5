-- The relay finishes a pass in one statement instead of a transaction of five.
--
-- After JetStream acknowledged a batch, the relay marked its outbox rows
-- published and folded its events into order_views in one transaction:
-- BEGIN, the views lock, mark_published(), SELECT ... FOR UPDATE of the views,
-- the upsert, COMMIT, and it had read the same views once already to find the
-- orders the fold refuses. relay_commit() does the write half in one call: it
-- takes the same views lock (so a replay and the relay still never
-- interleave), checks that no view moved since the relay read it (a replay
-- may have run in between; the relay then reads again), marks the rows and
-- stores the views the relay folded from what it read. One statement is one
-- transaction, so the marks and the views still commit together.

CREATE FUNCTION relay_commit(
    views_lock bigint,
    positions bigint[],
    order_ids text[],
    read_versions integer[],
    account_ids text[],
    states text[],
    versions integer[],
    accepted timestamptz[],
    views bytea[]
) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    moved integer;
BEGIN
    PERFORM pg_advisory_xact_lock(views_lock);

    -- read_versions holds the version each view had when the relay read it (0: none).
    SELECT count(*) INTO moved
    FROM unnest(order_ids, read_versions) AS r(order_id, read_version)
    LEFT JOIN public.order_views v USING (order_id)
    WHERE coalesce(v.stream_version, 0) <> r.read_version;
    IF moved > 0 THEN
        RAISE EXCEPTION '% order view(s) changed since the relay read them', moved
            USING ERRCODE = 'serialization_failure';
    END IF;

    PERFORM public.mark_published(positions);

    INSERT INTO public.order_views
        (order_id, account_id, state, stream_version, accepted_at, view)
    SELECT * FROM unnest(order_ids, account_ids, states, versions, accepted, views)
    ON CONFLICT (order_id) DO UPDATE SET
        account_id = EXCLUDED.account_id,
        state = EXCLUDED.state,
        stream_version = EXCLUDED.stream_version,
        accepted_at = EXCLUDED.accepted_at,
        view = EXCLUDED.view;
    RETURN cardinality(positions);
END;
$$;

REVOKE ALL ON FUNCTION relay_commit(
    bigint, bigint[], text[], integer[], text[], text[], integer[], timestamptz[], bytea[]
) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION relay_commit(
    bigint, bigint[], text[], integer[], text[], text[], integer[], timestamptz[], bytea[]
) TO brokermesh_app;
