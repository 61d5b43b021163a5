-- The role services connect as. It may append events and read everything,
-- maintain the outbox, the idempotency keys and the read model, and read the
-- reference data; it can neither rewrite nor delete history.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'brokermesh_app') THEN
        CREATE ROLE brokermesh_app LOGIN;
    END IF;
END;
$$;

GRANT USAGE ON SCHEMA public TO brokermesh_app;
GRANT SELECT, INSERT ON order_events TO brokermesh_app;
GRANT SELECT, INSERT, UPDATE ON outbox TO brokermesh_app;
GRANT SELECT, INSERT ON order_requests, executions TO brokermesh_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON order_views TO brokermesh_app;
GRANT SELECT ON advisors, accounts, advisor_accounts, positions, securities,
    restricted_list, risk_limits TO brokermesh_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO brokermesh_app;
