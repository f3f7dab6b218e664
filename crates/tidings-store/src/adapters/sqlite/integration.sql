-- The integration bus (schema version 7): registered services and their keys, topics, webhook
-- subscriptions, deliveries owed (driven from the log: `meta.bus_seq` is how far the log has
-- been matched against topics) and every delivery attempt. None of it is derived from the log
-- alone, so `tidings rebuild` leaves it as it is.

-- A registered service. It acts through `user_id`, a user named like the service without a
-- password: what it publishes has the service as author.
CREATE TABLE IF NOT EXISTS bus_services (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    user_id     INTEGER NOT NULL UNIQUE REFERENCES users(id),
    created_at  TEXT NOT NULL
);

-- A service's API keys, stored hashed; `id` is the public name a key is revoked by. A rotated
-- key keeps working until `expires_at`; a revoked one stops at once.
CREATE TABLE IF NOT EXISTS bus_service_keys (
    key_hash   TEXT PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    service_id INTEGER NOT NULL REFERENCES bus_services(id),
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT
);
CREATE INDEX IF NOT EXISTS bus_service_keys_by_service ON bus_service_keys(service_id);

-- A topic: without a filter it receives the activities addressed to it (`topic:NAME`); with
-- one, every new activity the filter matches.
CREATE TABLE IF NOT EXISTS bus_topics (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    filter      TEXT,
    description TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

-- A webhook subscription to a topic. `service_id` owns it (NULL: an admin's). `secret` signs
-- deliveries; while a secret rotates, `old_secret` signs too until `old_secret_until_ms`.
-- `failures` counts consecutive failed attempts; past the threshold the subscription is
-- disabled (`status`), as it is at once on a 410.
CREATE TABLE IF NOT EXISTS bus_webhooks (
    id                  TEXT PRIMARY KEY,
    topic_id            INTEGER NOT NULL REFERENCES bus_topics(id),
    service_id          INTEGER,
    url                 TEXT NOT NULL,
    secret              TEXT NOT NULL,
    old_secret          TEXT,
    old_secret_until_ms INTEGER,
    since_seq           INTEGER NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    disabled_reason     TEXT,
    failures            INTEGER NOT NULL DEFAULT 0,
    created_at          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS bus_webhooks_by_topic ON bus_webhooks(topic_id);

-- One activity owed to one webhook. `id` is the `webhook-id` header, the same on every
-- attempt (`round_start`: the attempts made before the last redelivery). A node leases a due delivery (`lease_until_ms`) before sending it, inside a write
-- transaction, so two nodes never send the same attempt.
CREATE TABLE IF NOT EXISTS bus_deliveries (
    id             TEXT PRIMARY KEY,
    webhook_id     TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts       INTEGER NOT NULL DEFAULT 0,
    round_start    INTEGER NOT NULL DEFAULT 0,
    next_at_ms     INTEGER NOT NULL,
    lease_until_ms INTEGER NOT NULL DEFAULT 0,
    created_at     TEXT NOT NULL,
    UNIQUE (webhook_id, seq)
);
CREATE INDEX IF NOT EXISTS bus_deliveries_due ON bus_deliveries(state, next_at_ms);

-- Every attempt: HTTP status (NULL when no response came), latency, outcome, the start of
-- the response body.
CREATE TABLE IF NOT EXISTS bus_attempts (
    delivery_id TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    at          TEXT NOT NULL,
    status      INTEGER,
    latency_ms  INTEGER NOT NULL,
    outcome     TEXT NOT NULL,
    excerpt     TEXT NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

-- Matching starts at the log's end: activities from before the bus existed are owed to no one.
INSERT OR IGNORE INTO meta(key, value)
SELECT 'bus_seq', CAST(COALESCE(MAX(seq), 0) AS TEXT) FROM activities;
INSERT OR IGNORE INTO meta(key, value) VALUES ('bus_generation', '0');
