"""The Kafka transport against a real Kafka-protocol broker (the bundled Tansu): the
contract of payrail/events/transport.py, and what happens when the broker or a consumer
dies."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import defaultdict

import pytest

from payrail.events.broker import TansuBroker
from payrail.events.kafka import KafkaSubscription, KafkaTransport
from payrail.events.transport import Delivered, TransportUnavailable, topic_for
from tests.events.kafka_fixtures import (
    drain,
    fast_settings,
    pairs,
    quiet,
    records,
    spawn_member,
)

PARTITIONS = 8


async def join(
    kafka: KafkaTransport,
    opened: list[KafkaSubscription],
    group: str,
    topics: list[str] | None,
) -> KafkaSubscription:
    member = await kafka.subscribe(group, topics)
    opened.append(member)
    return member


async def wait_for_assignment(
    members: list[KafkaSubscription],
    partitions: int,
    within: float = 20.0,
    fetched: list[Delivered] | None = None,
) -> list[list[tuple[str, int]]]:
    """Fetch (which serves the group protocol) until the members hold `partitions`
    between them. What they fetch meanwhile goes to `fetched`, or must be nothing."""
    deadline = time.monotonic() + within
    while True:
        held = [await member.assignment() for member in members]
        if sum(len(h) for h in held) == partitions and all(held):
            return held
        if time.monotonic() > deadline:
            raise AssertionError(f"no assignment of {partitions} partitions: {held}")
        for member in members:
            got = await member.fetch(100, max_wait=0.1)
            if fetched is None:
                assert got == []
            else:
                fetched += got


async def test_round_trip(
    kafka: KafkaTransport,
    kafka_members: list[KafkaSubscription],
    kafka_topic: str,
    kafka_group: str,
) -> None:
    producer = await kafka.producer()
    sent = records(kafka_topic, 5)
    await producer.publish(sent)
    member = await join(kafka, kafka_members, kafka_group, [kafka_topic])

    got = await drain(member, lambda got: len(got) >= 5)

    assert sorted((d.key, d.value) for d in got) == sorted((r.key, r.value) for r in sent)
    assert all(d.topic == kafka_topic and d.headers == {"event_type": "test.event"} for d in got)
    assert {d.partition for d in got} <= set(range(PARTITIONS))
    await member.commit(got)
    assert sum((await member.lag()).values()) == 0
    await member.close()
    await producer.close()

    # The group committed everything: a new member of it gets nothing again.
    again = await join(kafka, kafka_members, kafka_group, [kafka_topic])
    await wait_for_assignment([again], PARTITIONS)
    assert await quiet(again, 1.0) == []


async def test_order_per_key_over_many_records_and_partitions(
    kafka: KafkaTransport,
    kafka_members: list[KafkaSubscription],
    kafka_topic: str,
    kafka_group: str,
) -> None:
    producer = await kafka.producer()
    count, keys = 3000, 40
    # Several publishes in flight at once, as relay workers would: order holds within
    # each (one aggregate's records are published by one publish at a time).
    batches = [records(kafka_topic, 500, keys=keys, start=start) for start in range(0, count, 500)]
    for batch in batches:
        await producer.publish(batch)
    await producer.close()
    member = await join(kafka, kafka_members, kafka_group, [kafka_topic])

    got = await drain(member, lambda got: len(got) >= count, max_records=1000)

    assert len(got) == count
    sequences: dict[str, list[int]] = defaultdict(list)
    partitions: dict[str, set[int]] = defaultdict(set)
    for d in got:
        sequences[d.key].append(json.loads(d.value)["seq"])
        partitions[d.key].add(d.partition)
    assert all(seq == sorted(seq) for seq in sequences.values())
    assert all(len(p) == 1 for p in partitions.values()), "a key on two partitions"
    assert len({p for ps in partitions.values() for p in ps}) >= PARTITIONS - 2


async def test_members_split_partitions_and_a_leaving_member_hands_them_over(
    kafka: KafkaTransport,
    kafka_members: list[KafkaSubscription],
    kafka_topic: str,
    kafka_group: str,
) -> None:
    first = await join(kafka, kafka_members, kafka_group, [kafka_topic])  # creates it
    await wait_for_assignment([first], PARTITIONS)
    second = await join(kafka, kafka_members, kafka_group, [kafka_topic])

    held = await wait_for_assignment([first, second], PARTITIONS)

    assert set(held[0]).isdisjoint(held[1])
    assert set(held[0]) | set(held[1]) == {(kafka_topic, p) for p in range(PARTITIONS)}
    await first.close()
    held = await wait_for_assignment([second], PARTITIONS)
    assert held == [[(kafka_topic, p) for p in range(PARTITIONS)]]
    producer = await kafka.producer()
    await producer.publish(records(kafka_topic, 200, keys=50))
    got = await drain(second, lambda got: len(got) >= 200)
    assert sorted(json.loads(d.value)["seq"] for d in got) == list(range(200))
    await producer.close()


async def test_uncommitted_records_go_to_the_next_member(
    kafka: KafkaTransport,
    kafka_members: list[KafkaSubscription],
    kafka_topic: str,
    kafka_group: str,
) -> None:
    producer = await kafka.producer()
    await producer.publish(records(kafka_topic, 100))
    await producer.close()
    first = await join(kafka, kafka_members, kafka_group, [kafka_topic])
    got = await drain(first, lambda got: len(got) >= 100)
    done = [d for d in got if d.partition % 2 == 0]
    await first.commit(done)
    await first.close()  # the rest of the batch was never handled

    second = await join(kafka, kafka_members, kafka_group, [kafka_topic])
    again = await drain(second, lambda again: len(again) >= 100 - len(done), within=20)
    again += await quiet(second, 0.5)

    assert pairs(again) == pairs(got) - pairs(done)


async def test_a_member_killed_in_mid_batch_loses_nothing(
    kafka_broker: TansuBroker,
    kafka: KafkaTransport,
    kafka_members: list[KafkaSubscription],
    kafka_topic: str,
    kafka_group: str,
) -> None:
    producer = await kafka.producer()
    sent = records(kafka_topic, 300, keys=60)
    await producer.publish(sent)
    await producer.close()
    # A member in a process of its own fetches, commits part of what it fetched, and is
    # killed (SIGKILL: no goodbye to the group) while handling the rest.
    process, fetched, committed = await spawn_member(
        kafka_broker.bootstrap_servers, kafka_group, kafka_topic, fetch=300, commit=120
    )
    assert len(fetched) >= 300 and len(committed) == 120
    process.send_signal(signal.SIGKILL)
    await process.wait()

    # The group hands its partitions over once its session has expired.
    second = await join(kafka, kafka_members, kafka_group, [kafka_topic])
    again = await drain(second, lambda again: len(pairs(again)) >= 180, within=30)
    again += await quiet(second, 0.5)

    assert pairs(again) == set(fetched) - set(committed)
    assert len(set(committed) | pairs(again)) == len(sent)


async def test_lag_counts_what_is_not_committed(
    kafka: KafkaTransport,
    kafka_members: list[KafkaSubscription],
    kafka_topic: str,
    kafka_group: str,
) -> None:
    producer = await kafka.producer()
    await producer.publish(records(kafka_topic, 60, keys=30))
    await producer.close()
    member = await join(kafka, kafka_members, kafka_group, [kafka_topic])
    got = await drain(member, lambda got: len(got) >= 60)
    assert sum((await member.lag()).values()) == 60

    one = got[0].partition
    await member.commit([d for d in got if d.partition == one])

    lag = await member.lag()
    assert set(lag) == {(kafka_topic, p) for p in range(PARTITIONS)}
    assert lag[(kafka_topic, one)] == 0
    assert sum(lag.values()) == 60 - sum(1 for d in got if d.partition == one)


async def test_every_payrail_topic_reaches_a_member_of_all_topics(
    kafka: KafkaTransport, kafka_members: list[KafkaSubscription], kafka_group: str
) -> None:
    producer = await kafka.producer()
    before = topic_for("tbefore" + kafka_group[-8:])
    await producer.publish(records(before, 3))
    member = await join(kafka, kafka_members, kafka_group, None)
    await drain(member, lambda got: any(d.topic == before for d in got))

    # A topic created after the subscription: the pattern takes it in on a metadata
    # refresh, and the group starts it at its first record.
    later = topic_for("tlater" + kafka_group[-8:])
    await producer.publish(records(later, 3))
    got = await drain(member, lambda got: len([d for d in got if d.topic == later]) >= 3)

    assert len([d for d in got if d.topic == later]) == 3
    await producer.publish([r for r in records("other.topic", 1)])
    assert all(d.topic.startswith("payrail.") for d in await quiet(member, 1.0))
    await producer.close()


@pytest.mark.parametrize("down", ["stop", "kill"])
async def test_a_broker_restart_loses_nothing_acknowledged_and_publishes_fail_fast_meanwhile(
    durable_kafka_broker: TansuBroker, kafka_group: str, kafka_topic: str, down: str
) -> None:
    broker = durable_kafka_broker
    kafka = KafkaTransport(fast_settings(broker.bootstrap_servers))
    producer = await kafka.producer()
    await producer.publish(records(kafka_topic, 50))  # acknowledged: the broker has them
    early = await kafka.subscribe(kafka_group, [kafka_topic])
    fetched = await drain(early, lambda got: len(got) >= 50)
    done = [d for d in fetched if d.partition % 2 == 0]
    await early.commit(done)
    assert 0 < len(done) < 50

    # An orderly stop (SIGTERM), or a crash (SIGKILL: nothing flushed).
    broker.stop() if down == "stop" else broker.kill()
    # The relay's view: rows it could not publish stay pending and are published again.
    pending = records(kafka_topic, 100, start=50)
    for _ in range(2):
        started = time.monotonic()
        with pytest.raises(TransportUnavailable):
            await producer.publish(pending)
        # Well inside a relay lease (10 s), at publish_timeout plus a margin.
        assert time.monotonic() - started < kafka.settings.publish_timeout + 1.5

    broker.start()
    deadline = time.monotonic() + 20
    while True:
        try:
            await producer.publish(pending)
            break
        except TransportUnavailable:
            assert time.monotonic() < deadline, "publishing did not resume after the restart"
            await asyncio.sleep(0.2)
    await producer.close()

    # A new group reads the topic from its start: every record, each once, the 50
    # acknowledged before the restart included (the topic outlived it too).
    fresh = await kafka.subscribe(f"{kafka_group}-after", [kafka_topic])
    everything = await drain(fresh, lambda got: len(got) >= 150, within=30)
    everything += await quiet(fresh, 0.5)
    await fresh.close()
    assert sorted(json.loads(d.value)["seq"] for d in everything) == list(range(150))

    # The member that lived through the restart gets every record published after it.
    after = {json.loads(r.value)["seq"] for r in pending}
    got = await drain(early, lambda got: after <= seqs(got), within=30)
    assert after <= seqs(got)
    await early.close()

    # The group's commit outlived the restart: its next member gets what was not
    # committed, and nothing that was (with the offsets lost it would read all 150).
    later = await kafka.subscribe(kafka_group, [kafka_topic])
    again = await drain(later, lambda again: len(again) >= 150 - len(done), within=30)
    again += await quiet(later, 0.5)
    await later.close()
    assert pairs(again) == pairs(everything) - pairs(done)
    assert len(again) == len(pairs(again))


def seqs(delivered: list[Delivered]) -> set[int]:
    return {json.loads(d.value)["seq"] for d in delivered}


async def test_publish_returns_once_every_record_is_acknowledged(
    kafka: KafkaTransport,
    kafka_members: list[KafkaSubscription],
    kafka_topic: str,
    kafka_group: str,
) -> None:
    producer = await kafka.producer()
    await producer.publish(records(kafka_topic, 2000, keys=500))
    # Drop whatever the client might still hold, sent or not: had publish returned
    # before the broker acknowledged everything, some records would now be missing.
    producer._producer.purge(in_queue=True, in_flight=True)
    await producer.close()
    member = await join(kafka, kafka_members, kafka_group, [kafka_topic])
    got = await drain(member, lambda got: len(got) >= 2000, max_records=1000)
    got += await quiet(member, 0.3)
    assert sorted(json.loads(d.value)["seq"] for d in got) == list(range(2000))


def test_kafka_is_chosen_by_the_environment() -> None:
    assert KafkaTransport.from_env({}) is None
    assert KafkaTransport.from_env({"PAYRAIL_KAFKA_BOOTSTRAP_SERVERS": " "}) is None
    transport = KafkaTransport.from_env({"PAYRAIL_KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092"})
    assert transport is not None
    assert transport.settings.bootstrap_servers == "k1:9092,k2:9092"
    assert transport.settings.producer_config()["enable.idempotence"] is False
    assert transport.settings.producer_config()["max.in.flight.requests.per.connection"] == 1
    idempotent = KafkaTransport.from_env(
        {"PAYRAIL_KAFKA_BOOTSTRAP_SERVERS": "k1:9092", "PAYRAIL_KAFKA_IDEMPOTENCE": "1"}
    )
    assert idempotent is not None and idempotent.settings.producer_config()["acks"] == "all"
    assert idempotent.settings.producer_config()["enable.idempotence"] is True
