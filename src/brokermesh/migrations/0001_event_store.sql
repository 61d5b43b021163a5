-- The order event store: append-only, one stream per order, hash-chained.
--
-- Services connect as brokermesh_app, which may INSERT and SELECT events but
-- never UPDATE or DELETE them; a trigger refuses those statements for every
-- role, so even an owner must disable it on purpose to alter history, and
-- `brokermesh audit verify` then finds the broken chain.

CREATE TABLE order_events (
    position        bigserial   PRIMARY KEY,
    event_id        uuid        NOT NULL UNIQUE,
    stream_id       text        NOT NULL,
    stream_version  integer     NOT NULL CHECK (stream_version > 0),
    event_type      text        NOT NULL,
    event_version   text        NOT NULL,
    -- Serialized brokermesh.events.v1.OrderEvent.
    payload         bytea       NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- sha256 over the previous event's hash and this event's identity and payload.
    prev_hash       bytea       NOT NULL CHECK (length(prev_hash) = 32),
    hash            bytea       NOT NULL CHECK (length(hash) = 32),
    -- Optimistic concurrency: two writers cannot both append version N.
    CONSTRAINT order_events_stream_version_key UNIQUE (stream_id, stream_version)
);

CREATE FUNCTION order_events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'order_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER order_events_append_only
    BEFORE UPDATE OR DELETE ON order_events
    FOR EACH ROW EXECUTE FUNCTION order_events_refuse_change();

CREATE TRIGGER order_events_no_truncate
    BEFORE TRUNCATE ON order_events
    FOR EACH STATEMENT EXECUTE FUNCTION order_events_refuse_change();

-- Events waiting for the relay to publish them to NATS JetStream. The relay
-- reads unpublished rows in position order and marks each one only after
-- JetStream acknowledged it, so a transaction that commits late is picked up
-- on the next pass rather than skipped.
CREATE TABLE outbox (
    position      bigserial   PRIMARY KEY,
    event_id      uuid        NOT NULL UNIQUE REFERENCES order_events (event_id),
    published_at  timestamptz
);

CREATE INDEX outbox_unpublished ON outbox (position) WHERE published_at IS NULL;

-- Idempotency: one order per (account, client order id).
CREATE TABLE order_requests (
    account_id       text        NOT NULL,
    client_order_id  text        NOT NULL,
    order_id         text        NOT NULL UNIQUE,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, client_order_id)
);

-- Execution reports already recorded, so a venue's resend is not a second fill.
CREATE TABLE executions (
    exec_id      text        PRIMARY KEY,
    order_id     text        NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);

-- Order ids: ORD-YYYYMMDD-NNNNNNNN. Each nextval reserves a block of 100
-- numbers for one order entry process, so ids cost no round trip per order.
CREATE SEQUENCE order_number_seq INCREMENT BY 100;

-- The read model projected from the events.
CREATE TABLE order_views (
    order_id        text        PRIMARY KEY,
    account_id      text        NOT NULL,
    state           text        NOT NULL,
    stream_version  integer     NOT NULL,
    accepted_at     timestamptz NOT NULL,
    -- Serialized brokermesh.trading.v1.OrderView.
    view            bytea       NOT NULL
);

CREATE INDEX order_views_by_account ON order_views (account_id, accepted_at DESC);
