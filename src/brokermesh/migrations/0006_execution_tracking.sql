-- Trade capture's own records beside the event store: which orders their venue
-- has acknowledged, and the execution reports that could not be applied.

-- One row per order once its venue has shown that it holds the order (an
-- acknowledgement, a fill or an answer to a status request). The reconciler
-- asks the venue about routed orders that have none after a while.
CREATE TABLE venue_acknowledgements (
    order_id         text        PRIMARY KEY,
    venue            text        NOT NULL,
    venue_order_id   text        NOT NULL,
    -- The report that showed it.
    exec_id          text        NOT NULL,
    acknowledged_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Execution breaks: venue reports trade capture could not apply to the order's
-- stream, such as an over-fill, a fill after a final state, a report for an
-- unknown order, or a venue quantity that disagrees with the stream. A break is
-- never lost and never holds up the reports after it; the operations desk
-- settles it with the venue. Append-only, like the events.
CREATE TABLE execution_breaks (
    break_id     bigserial   PRIMARY KEY,
    exec_id      text        NOT NULL UNIQUE,
    order_id     text        NOT NULL,
    venue        text        NOT NULL,
    kind         text        NOT NULL CHECK (kind IN (
        'OVER_FILL', 'AFTER_FINAL_STATE', 'UNKNOWN_ORDER', 'QUANTITY_MISMATCH',
        'ILLEGAL_TRANSITION'
    )),
    -- The order's state when the report arrived.
    order_state  text        NOT NULL,
    detail       text        NOT NULL,
    -- Serialized brokermesh.trading.v1.RecordExecutionRequest, as received.
    report       bytea       NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX execution_breaks_by_order ON execution_breaks (order_id);

CREATE FUNCTION execution_breaks_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'execution_breaks is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER execution_breaks_append_only
    BEFORE UPDATE OR DELETE ON execution_breaks
    FOR EACH ROW EXECUTE FUNCTION execution_breaks_refuse_change();

CREATE TRIGGER execution_breaks_no_truncate
    BEFORE TRUNCATE ON execution_breaks
    FOR EACH STATEMENT EXECUTE FUNCTION execution_breaks_refuse_change();

-- The reconciler reads routed orders by age.
CREATE INDEX order_events_routed_at ON order_events (recorded_at)
    WHERE event_type = 'OrderRouted';

GRANT SELECT, INSERT ON venue_acknowledgements, execution_breaks TO brokermesh_app;
GRANT USAGE ON SEQUENCE execution_breaks_break_id_seq TO brokermesh_app;
