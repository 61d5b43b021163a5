-- Reference data: advisors, accounts, entitlements, positions, securities,
-- the restricted list and per-account risk limits.

CREATE TABLE advisors (
    advisor_id  text PRIMARY KEY,
    name        text NOT NULL,
    active      boolean NOT NULL DEFAULT true
);

CREATE TABLE accounts (
    account_id    text    PRIMARY KEY,
    name          text    NOT NULL,
    -- ACTIVE, RESTRICTED (closing trades only) or FROZEN (no trading).
    status        text    NOT NULL CHECK (status IN ('ACTIVE', 'RESTRICTED', 'FROZEN')),
    cash          numeric(20, 6) NOT NULL,
    -- Products the account may trade, e.g. {EQUITY}; margin is not offered.
    permissions   text[]  NOT NULL DEFAULT '{EQUITY}'
);

-- Which advisor may act on which account.
CREATE TABLE advisor_accounts (
    advisor_id  text NOT NULL REFERENCES advisors (advisor_id),
    account_id  text NOT NULL REFERENCES accounts (account_id),
    PRIMARY KEY (advisor_id, account_id)
);

CREATE TABLE positions (
    account_id  text NOT NULL REFERENCES accounts (account_id),
    symbol      text NOT NULL,
    quantity    bigint NOT NULL,
    PRIMARY KEY (account_id, symbol)
);

CREATE TABLE securities (
    symbol                text PRIMARY KEY,
    name                  text NOT NULL,
    reference_price       numeric(20, 6) NOT NULL CHECK (reference_price > 0),
    average_daily_volume  bigint NOT NULL,
    -- Whether the firm lets advisors trade it at all.
    eligible              boolean NOT NULL
);

-- Symbols nobody, or one account, may trade (e.g. insiders, pending news).
CREATE TABLE restricted_list (
    symbol      text NOT NULL,
    -- NULL restricts the symbol firm-wide.
    account_id  text REFERENCES accounts (account_id),
    reason      text NOT NULL
);

CREATE UNIQUE INDEX restricted_list_key ON restricted_list (symbol, coalesce(account_id, ''));

-- Pre-trade risk limits; the row with account_id NULL is the firm default.
CREATE TABLE risk_limits (
    account_id             text UNIQUE REFERENCES accounts (account_id),
    max_order_notional     numeric(20, 2) NOT NULL,
    max_order_quantity     bigint NOT NULL,
    -- Largest distance of a limit price from the last price, in basis points.
    price_collar_bps       integer NOT NULL,
    -- Largest share of the account's value one symbol may reach, in basis points.
    max_concentration_bps  integer NOT NULL
);

CREATE UNIQUE INDEX risk_limits_firm_default ON risk_limits ((account_id IS NULL))
    WHERE account_id IS NULL;
