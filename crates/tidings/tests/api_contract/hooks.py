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
