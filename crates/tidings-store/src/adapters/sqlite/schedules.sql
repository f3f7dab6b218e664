-- Schema version 10 (decision 0025): sync replies and scheduled publishing. Mutable state, not
-- log: neither is derived from the log, so `tidings rebuild` leaves both as they are.

-- The first reply a consumer gave to an activity (a webhook's 2xx body; a pull consumer's
-- ack payload): what `POST /outbox?wait=replied` answers with. First writer wins.
CREATE TABLE IF NOT EXISTS bus_sync_replies (
    seq    INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    status INTEGER,
    body   TEXT NOT NULL,
    at_ms  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS bus_sync_replies_by_age ON bus_sync_replies(at_ms);

-- An activity to publish later: once at `next_at_ms` (`cron` NULL: a `publish_at`), or on a
-- cron schedule in `timezone`. `actor_id` publishes it (an admin, or a service's user);
-- `service_id` owns it (NULL: an admin's). Each fire publishes with the idempotency key
-- `schedule:ID:FIRE_MS`, so a fire retried after a crash, or tried by two nodes, stores once.
CREATE TABLE IF NOT EXISTS bus_schedules (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    actor_id      INTEGER NOT NULL,
    service_id    INTEGER,
    cron          TEXT,
    timezone      TEXT,
    activity      TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('active', 'paused', 'done')),
    next_at_ms    INTEGER,
    fired         INTEGER NOT NULL DEFAULT 0,
    last_fired_at TEXT,
    last_activity TEXT,
    last_error    TEXT,
    created_at    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS bus_schedules_due ON bus_schedules(status, next_at_ms);
