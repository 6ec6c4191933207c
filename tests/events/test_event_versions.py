"""Events keep their shape within a version (docs/events.md), and a consumer built for
an older shape reads newer events.

The outbox test checks every event it makes against `event_shapes.json`; these tests
show that the check catches each kind of break, and that consumers are built to read
what is added."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from payrail.events.schemas import MalformedEvent, parse_event
from tests.events import shapes


def intent_event(**object_fields: Any) -> dict[str, Any]:
    return {
        "id": "evt_1",
        "object": "event",
        "type": "payment_intent.succeeded",
        "version": 1,
        "created": 1_795_000_000,
        "livemode": False,
        "merchant": "mer_1",
        "data": {
            "object": {
                "id": "pi_1",
                "object": "payment_intent",
                "amount": 2000,
                "currency": "usd",
                "status": "succeeded",
                "customer": None,
                "metadata": {"order": "42"},
                "payment_method_types": ["card"],
                **object_fields,
            }
        },
    }


RECORDED = shapes.shapes_of([intent_event(), intent_event(customer="cus_1")])


def test_an_added_field_keeps_the_rule() -> None:
    newer = intent_event(amount_details={"tip": {"amount": 0}}, latest_charge="ch_1")
    newer["request"] = {"id": "req_1"}
    assert shapes.breaks(RECORDED, shapes.shapes_of([newer])) == []


def test_metadata_keys_are_the_merchants_data_not_fields() -> None:
    other = intent_event(metadata={"plan": "premium"})
    assert shapes.breaks(RECORDED, shapes.shapes_of([other])) == []


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda o: o.pop("currency"), "data.object.currency removed"),
        (lambda o: o.update(amount="2000"), "data.object.amount was ['integer'], now ['string']"),
        (lambda o: o.update(status=None), "data.object.status was never null, now is"),
        (lambda o: o.update(payment_method_types="card"), "data.object.payment_method_types"),
    ],
)
def test_a_removed_retyped_or_newly_null_field_breaks_it(change: Any, complaint: str) -> None:
    event = intent_event()
    change(event["data"]["object"])
    found = shapes.breaks(RECORDED, shapes.shapes_of([event]))
    assert any(complaint in line for line in found), found


def test_a_type_or_version_never_recorded_is_flagged() -> None:
    event = intent_event()
    event["version"] = 2
    assert shapes.breaks(RECORDED, shapes.shapes_of([event])) == [
        "payment_intent.succeeded@2: not recorded (PAYRAIL_RECORD_EVENT_SHAPES=1 records it)"
    ]


def test_the_recorded_shapes_cover_the_payment_events() -> None:
    recorded = shapes.load()
    for key in ("payment_intent.succeeded@1", "refund.updated@1", "ledger.transaction.posted@1"):
        assert "data.object.id" in recorded[key]


class FulfilmentV1:
    """A consumer written against version 1 of payment_intent.succeeded as it was first
    published: it reads four fields and must not care about any other."""

    def __init__(self) -> None:
        self.fulfilled: list[tuple[str, int, str]] = []

    def handle(self, value: bytes) -> None:
        event = parse_event(value)
        if event.type != "payment_intent.succeeded" or event.version != 1:
            return  # a version it was not built for: left to a newer consumer
        intent = event.object
        self.fulfilled.append((intent["id"], intent["amount"], intent["currency"]))


def test_a_consumer_of_the_old_shape_reads_new_events() -> None:
    consumer = FulfilmentV1()
    newer = intent_event(amount_details={"tip": {"amount": 0}}, latest_charge="ch_1")
    newer["request"] = {"id": "req_1", "idempotency_key": "k"}
    newer["pending_webhooks"] = 2
    consumer.handle(orjson.dumps(intent_event()))
    consumer.handle(orjson.dumps(newer))
    next_version = copy.deepcopy(newer)
    next_version["version"] = 2
    next_version["data"]["object"]["amount"] = {"value": 2000, "currency": "usd"}
    consumer.handle(orjson.dumps(next_version))
    assert consumer.fulfilled == [("pi_1", 2000, "usd"), ("pi_1", 2000, "usd")]


@pytest.mark.parametrize(
    "value",
    [
        b"[1, 2]",
        b'{"id": "evt_1"}',
        orjson.dumps({**intent_event(), "version": True}),
        orjson.dumps({**intent_event(), "data": {"object": "pi_1"}}),
    ],
)
def test_what_is_not_an_event_is_refused_by_name(value: bytes) -> None:
    with pytest.raises(MalformedEvent):
        parse_event(value)
