-- The outbox is no longer the services' to write.
--
-- Until now the application role inserted each event's outbox row itself and
-- could UPDATE the outbox, so it could append an event that never gets an
-- outbox row (never published, never anchored on JetStream) or set
-- published_at on a row that was never published. From here on:
--
-- * an AFTER INSERT trigger on order_events writes exactly one outbox row per
--   event, in position order, and wakes the relay; the trigger runs as the
--   owner, so it needs no privilege on the outbox from the inserting role;
-- * the application role keeps only SELECT on the outbox;
-- * the relay marks rows published through mark_published(), which can only
--   move published_at from NULL to now(), never back and never to a chosen
--   time. All services connect as brokermesh_app, so that is the role that may
--   execute it.
--
-- Each outbox row also records the id of the transaction that wrote it (xact),
-- so the ledger's checkpoints can find every event committed since the
-- previous checkpoint, including those of transactions that took a lower
-- position and committed late.

ALTER TABLE outbox ADD COLUMN xact xid8 NOT NULL DEFAULT pg_current_xact_id();

CREATE INDEX outbox_by_xact ON outbox (xact);

CREATE FUNCTION order_events_schedule() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO public.outbox (event_id) SELECT event_id FROM appended ORDER BY position;
    -- A statement that inserted nothing (a repeated idempotency key) wakes nobody.
    IF FOUND THEN
        -- The channel the relay LISTENs on (brokermesh.domain.eventstore.OUTBOX_CHANNEL).
        PERFORM pg_notify('brokermesh_outbox', '');
    END IF;
    RETURN NULL;
END;
$$;

REVOKE ALL ON FUNCTION order_events_schedule() FROM PUBLIC;

CREATE TRIGGER order_events_schedule
    AFTER INSERT ON order_events
    REFERENCING NEW TABLE AS appended
    FOR EACH STATEMENT EXECUTE FUNCTION order_events_schedule();

CREATE FUNCTION mark_published(positions bigint[]) RETURNS integer
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH marked AS (
        UPDATE public.outbox SET published_at = now()
        WHERE position = ANY (positions) AND published_at IS NULL
        RETURNING 1
    )
    SELECT count(*)::integer FROM marked
$$;

REVOKE ALL ON FUNCTION mark_published(bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mark_published(bigint[]) TO brokermesh_app;

REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON outbox FROM brokermesh_app;
