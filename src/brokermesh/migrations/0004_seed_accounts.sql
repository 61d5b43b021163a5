-- Demonstration book of business: the blueprint's advisor and account, plus
-- accounts that exercise each OMS control. Securities are loaded from
-- brokermesh/data/securities.csv by the migration runner.
INSERT INTO advisors (advisor_id, name) VALUES
    ('ADV-1207', 'Dana Whitfield'),
    ('ADV-2001', 'Sam Okafor');

INSERT INTO accounts (account_id, name, status, cash, permissions) VALUES
    ('ACC-987654', 'Whitfield Family Trust',   'ACTIVE',     2500000.00, '{EQUITY}'),
    ('ACC-987655', 'Whitfield IRA',            'ACTIVE',        2000.00, '{EQUITY}'),
    ('ACC-987656', 'Harbor Lane Estate',       'FROZEN',      100000.00, '{EQUITY}'),
    ('ACC-987657', 'Okafor Cash Management',   'ACTIVE',      100000.00, '{}'),
    ('ACC-555001', 'Okafor Growth Portfolio',  'ACTIVE',      750000.00, '{EQUITY}');

INSERT INTO advisor_accounts (advisor_id, account_id) VALUES
    ('ADV-1207', 'ACC-987654'),
    ('ADV-1207', 'ACC-987655'),
    ('ADV-1207', 'ACC-987656'),
    ('ADV-1207', 'ACC-987657'),
    ('ADV-2001', 'ACC-555001');

INSERT INTO positions (account_id, symbol, quantity) VALUES
    ('ACC-987654', 'AAPL', 1500),
    ('ACC-987654', 'MSFT', 800),
    ('ACC-987654', 'SPY', 1200),
    ('ACC-555001', 'QQQ', 400);

INSERT INTO restricted_list (symbol, account_id, reason) VALUES
    ('BMSH', NULL, 'issuer is the firm: employee trading blackout'),
    ('TSLA', 'ACC-555001', 'client is an affiliated person of the issuer');

INSERT INTO risk_limits
    (account_id, max_order_notional, max_order_quantity, price_collar_bps, max_concentration_bps)
VALUES
    (NULL, 1000000.00, 50000, 500, 3000);
