"""Schemathesis hooks for the API contract run (crates/tidings/tests/api_contract.rs).

Cursors carry a checksum, so the document marks them `format: cursor` (15 base64url
characters) and the server refuses any cursor it did not hand out. Schemathesis cannot invent
valid ones, so this hook draws them from cursors the seeded server returned
(TIDINGS_CONTRACT_CURSORS, comma-separated): generated cursors come from that list, and a
cursor-shaped value that the server never issued is swapped for a real one before the call.
Values that do not have the cursor's shape (the negative cases) are sent as generated.
"""

import os
import re

import jsonschema_rs
import schemathesis
from hypothesis import strategies as st

_CURSORS = [c for c in os.environ.get("TIDINGS_CONTRACT_CURSORS", "").split(",") if c]
if not _CURSORS:
    raise RuntimeError("TIDINGS_CONTRACT_CURSORS is empty: give the run some real cursors")
_SHAPE = re.compile(r"^[A-Za-z0-9_-]{15}$")
_QUERY_CURSORS = ("before", "after")

schemathesis.openapi.format("cursor", st.sampled_from(_CURSORS))

# Topic filters have a grammar of their own (docs/bus.md) and webhook URLs must reach an address
# the server allows (the contract server allows 127.0.0.1; port 9 refuses, so deliveries fail
# harmlessly): generated ones come from these.
_FILTERS = [
    "paid@*",
    "type == Create",
    "$.object.amount > 100",
    "release@c0000-release or author == contract",
    "exists $.object.name and not tag == spam",
]
_URLS = ["http://127.0.0.1:9/hook"]
schemathesis.openapi.format("topic-filter", st.sampled_from(_FILTERS))
schemathesis.openapi.format("webhook-url", st.sampled_from(_URLS))
# A subscription's start or a replay's `from`, as a string: `beginning`, `now` or an RFC 3339
# time (a log position is the integer branch of the same schema).
schemathesis.openapi.format(
    "bus-position", st.sampled_from(["beginning", "now", "2026-01-01T00:00:00Z"])
)

# Cron expressions and IANA zones have grammars of their own (docs/bus.md): generated ones
# come from these.
_CRONS = ["0 9 * * 1-5", "*/15 * * * *", "30 2 * * *", "0 0 1 * *", "15 * * * * *"]
_ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo"]
schemathesis.openapi.format("cron", st.sampled_from(_CRONS))
schemathesis.openapi.format("timezone", st.sampled_from(_ZONES))


def _real(value):
    if isinstance(value, str) and _SHAPE.match(value) and value not in _CURSORS:
        return _CURSORS[sum(value.encode()) % len(_CURSORS)]
    return value


@schemathesis.hook
def before_call(context, case, kwargs):
    # FeedStream's `before` / `after` are item ids, not cursors.
    if case.path.startswith("/v1/"):
        return
    if isinstance(case.query, dict):
        for key in _QUERY_CURSORS:
            if key in case.query:
                case.query[key] = _real(case.query[key])
    if isinstance(case.body, dict) and "cursor" in case.body:
        case.body["cursor"] = _real(case.body["cursor"])
    # A schema-valid webhook URL or topic filter may still be one the server refuses (a host
    # that does not resolve, a filter that does not parse: both 400 with a reason); the
    # positive cases send ones it accepts, whatever phase made them.
    if case.meta is not None and case.meta.generation.mode.is_positive and isinstance(case.body, dict):
        if case.path.endswith("/subscriptions") and case.path.startswith("/api/v1/topics/"):
            if isinstance(case.body.get("url"), str) and case.body["url"] not in _URLS:
                case.body["url"] = _URLS[0]
        if case.path == "/api/v1/topics" and isinstance(case.body.get("filter"), str):
            if case.body["filter"] not in _FILTERS:
                case.body["filter"] = _FILTERS[sum(case.body["filter"].encode()) % len(_FILTERS)]
        if case.path == "/api/v1/schedules":
            if isinstance(case.body.get("cron"), str) and case.body["cron"] not in _CRONS:
                case.body["cron"] = _CRONS[0]
            if isinstance(case.body.get("timezone"), str) and case.body["timezone"] not in _ZONES:
                case.body["timezone"] = _ZONES[0]
        # A publish_at every parser agrees on (no leap second, no year 0).
        if isinstance(case.body.get("publish_at"), str) and not _plain_time(case.body["publish_at"]):
            case.body["publish_at"] = "2030-01-01T00:00:00Z"
    # A sync publish (`wait=replied`) answers 503 no_responder or 504 reply_timeout when no
    # subscriber replies (the run's webhooks point at a closed port), which not_a_server_error
    # counts as a server failure: the run publishes without waiting, and the bus_schedule suite
    # covers the sync answers.
    if case.path == "/api/v1/outbox" and isinstance(case.query, dict):
        if case.query.get("wait") == "replied":
            del case.query["wait"]
    # `before` and `after` exclude each other (a rule JSON Schema cannot state across two
    # parameters; the document says it in words): when both hold real cursors, keep `before`.
    if (
        isinstance(case.query, dict)
        and case.query.get("before") in _CURSORS
        and case.query.get("after") in _CURSORS
    ):
        del case.query["after"]


@schemathesis.hook("filter_case")
def valid_custom_type_schemas(context, case):
    """A custom type's `schema` must itself be a JSON Schema, which the document cannot say
    without the remote metaschema: drop the schema-valid cases whose `schema` is not one (the
    server refuses them with 400, as it should), keep every negative case."""
    if case.operation.label != "POST /api/v1/types" or not case.meta.generation.mode.is_positive:
        return True
    if not isinstance(case.body, dict) or "schema" not in case.body:
        return True
    try:
        jsonschema_rs.validator_for(case.body["schema"])
    except Exception:
        return False
    return True


_ACTIVITY_FILTERS = ("circle", "author", "tag", "object_type", "since", "until")
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-](\d{2}):(\d{2}))$"
)


def _plain_time(value):
    """An RFC 3339 time every parser agrees on (no leap second, no year 0)."""
    import datetime

    m = _RFC3339.match(value) if isinstance(value, str) else None
    if not m:
        return False
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    if m.group(9) and (int(m.group(9)) > 23 or int(m.group(10)) > 59):
        return False
    try:
        datetime.datetime(year, month, day, hour, minute, second)
    except ValueError:
        return False
    return True


@schemathesis.hook("filter_case")
def runnable_search_queries(context, case):
    """A search query's grammar (quotes that close, at most 16 terms, operators with valid
    values, something to look for) and the rule that activity filters go with
    type=activities are beyond a JSON Schema: drop the schema-valid cases that break them (the
    server answers those with a documented 400), keep every negative case. Conservative: a
    query with quotes or operators, or without an ASCII letter or digit, is dropped."""
    if case.operation.label != "GET /api/v1/search" or not case.meta.generation.mode.is_positive:
        return True
    query = case.query if isinstance(case.query, dict) else {}
    q = query.get("q", "")
    if not isinstance(q, str) or '"' in q or ":" in q or len(q.split()) > 16:
        return False
    if not any(c.isascii() and c.isalnum() for c in q):
        return False
    if query.get("type") in ("circles", "people") and any(k in query for k in _ACTIVITY_FILTERS):
        return False
    return all(_plain_time(query[k]) for k in ("since", "until") if k in query)
