"""Which Kafka client payrail uses: aiokafka against confluent-kafka, measured.

Against the bundled Tansu broker, started as payrail starts it, for each client:
- produce throughput: ~1 KB JSON values, keyed by aggregate id, acks=all, no
  idempotence, one request in flight per connection (payrail's ordering settings),
  batched; once streaming (everything queued, then every ack awaited) and once the way
  the relay publishes (batches of 1,000, each fully acknowledged before the next);
- consume throughput through a consumer group;
- end-to-end latency p50/p99 at a fixed 1,000 records/s, producer and consumer in two
  processes;
- the client's CPU per record (user + system time of the process, all its threads).
Each phase runs in a fresh process so that one client's threads and buffers do not
weigh on the other's figures.

    uv run --with aiokafka --with confluent-kafka python scripts/kafka_client_choice.py

The figures and the choice are in docs/kafka.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from payrail.events.broker import TansuBroker

PARTITIONS = 8
KEYS = 10_000  # distinct aggregate ids
BATCH = 1_000  # records per relay publish
RATE = 1_000  # records/s in the latency phase
# How long the broker may hold a fetch that finds nothing new. Tansu answers when this
# expires, not when a record arrives, so it bounds the consumer's added latency.
FETCH_WAIT_MS = 50

# The producer settings payrail runs with (payrail/events/kafka.py): Tansu has no
# idempotent producer, so order across retries comes from one request in flight.
CONFLUENT_PRODUCER = {
    "acks": "all",
    "enable.idempotence": False,
    "max.in.flight.requests.per.connection": 1,
    "linger.ms": 5,
    "batch.size": 1_000_000,
}
AIOKAFKA_PRODUCER = {
    "acks": "all",
    "enable_idempotence": False,
    "linger_ms": 5,
    "max_batch_size": 1_000_000,
    "max_request_size": 8_000_000,
}


def value(i: int, sent_ns: int = 0) -> bytes:
    """An event envelope of about 1 KB."""
    document = {
        "id": f"evt_{i:024d}",
        "type": "payment_intent.succeeded",
        "version": 1,
        "merchant": "mer_0000000000000000000000001",
        "livemode": False,
        "created": 1_790_000_000 + i,
        "sent_ns": sent_ns,
        "data": {"object": {"id": f"pi_{i:024d}", "amount": 1999, "currency": "usd"}},
    }
    padding = 1000 - len(json.dumps(document))
    document["data"]["object"]["description"] = "x" * max(padding, 0)  # type: ignore[index]
    return json.dumps(document).encode()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- confluent-kafka ---------------------------------------------------------------


def confluent_produce(
    bootstrap: str, topic: str, count: int, batch: int | None
) -> dict[str, float]:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, **CONFLUENT_PRODUCER})
    values = [value(i) for i in range(count)]
    keys = [f"pi_{random.randrange(KEYS):08d}" for _ in range(count)]
    failed = 0

    def delivered(err: Any, _msg: Any) -> None:
        nonlocal failed
        if err is not None:
            failed += 1

    producer.produce(topic, b"{}", "warm-up")  # connection and metadata outside the timing
    producer.flush(10)
    cpu, started = cpu_seconds(), time.perf_counter()
    step = batch or count
    for start in range(0, count, step):
        for i in range(start, min(start + step, count)):
            while True:
                try:
                    producer.produce(topic, values[i], keys[i], on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.01)
        producer.flush(30)
    elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    assert failed == 0, f"{failed} records not acknowledged"
    return {"records_per_s": count / elapsed, "cpu_us_per_record": cpu / count * 1e6}


def confluent_consumer(bootstrap: str, group: str, topic: str) -> Any:
    from confluent_kafka import Consumer

    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "fetch.wait.max.ms": FETCH_WAIT_MS,
        }
    )


def confluent_fetch(consumer: Any, count: int, timeout: float) -> list[Any]:
    """What is there, waiting only for the first record: `consume(n, t)` alone waits
    until it has n records or t has passed, which would add up to t to every latency."""
    first: list[Any] = consumer.consume(1, timeout)
    return first + consumer.consume(count - 1, 0) if first else first


def confluent_consume(bootstrap: str, topic: str, count: int) -> dict[str, float]:
    consumer = confluent_consumer(bootstrap, f"throughput-{time.time_ns()}", topic)
    consumer.subscribe([topic])
    got = 0
    started = cpu = 0.0
    while got < count:
        messages = confluent_fetch(consumer, 1000, 1.0)
        if messages and not got:  # the group has formed: measure from here
            started, cpu = time.perf_counter(), cpu_seconds()
        got += sum(1 for m in messages if m.error() is None)
    elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    consumer.close()
    return {"records_per_s": count / elapsed, "cpu_us_per_record": cpu / count * 1e6}


def confluent_latency_consumer(bootstrap: str, topic: str, count: int, ready: Any) -> list[float]:
    consumer = confluent_consumer(bootstrap, f"latency-{time.time_ns()}", topic)
    consumer.subscribe([topic], on_assign=lambda _c, _p: ready.set())
    latencies: list[float] = []
    while len(latencies) < count:
        for message in confluent_fetch(consumer, 1000, 0.5):
            sent = json.loads(message.value())["sent_ns"] if message.error() is None else 0
            if sent:  # not the warm-up record
                latencies.append((time.monotonic_ns() - sent) / 1e6)
    consumer.close()
    return latencies


def confluent_paced_producer(bootstrap: str, topic: str, count: int) -> float:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, **CONFLUENT_PRODUCER})
    producer.produce(topic, value(0), "warm-up")
    producer.flush(10)
    cpu, started = cpu_seconds(), time.monotonic()
    for i in range(count):
        _pace(started, i)
        producer.produce(topic, value(i, time.monotonic_ns()), f"pi_{random.randrange(KEYS)}")
        producer.poll(0)
    producer.flush(30)
    return (cpu_seconds() - cpu) / count * 1e6


# --- aiokafka ------------------------------------------------------------------------


def aiokafka_produce(bootstrap: str, topic: str, count: int, batch: int | None) -> dict[str, float]:
    async def run() -> dict[str, float]:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **AIOKAFKA_PRODUCER)
        await producer.start()
        values = [value(i) for i in range(count)]
        keys = [f"pi_{random.randrange(KEYS):08d}".encode() for _ in range(count)]
        await producer.send_and_wait(topic, b"{}", b"warm-up")
        cpu, started = cpu_seconds(), time.perf_counter()
        step = batch or count
        for start in range(0, count, step):
            futures = [
                await producer.send(topic, values[i], keys[i])
                for i in range(start, min(start + step, count))
            ]
            await asyncio.gather(*futures)
        elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
        await producer.stop()
        return {"records_per_s": count / elapsed, "cpu_us_per_record": cpu / count * 1e6}

    return asyncio.run(run())


def aiokafka_consumer(bootstrap: str, group: str) -> Any:
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        fetch_max_wait_ms=FETCH_WAIT_MS,
    )


def aiokafka_consume(bootstrap: str, topic: str, count: int) -> dict[str, float]:
    async def run() -> dict[str, float]:
        consumer = aiokafka_consumer(bootstrap, f"throughput-{time.time_ns()}")
        consumer.subscribe([topic])
        await consumer.start()
        got = 0
        started = cpu = 0.0
        while got < count:
            batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
            if batches and not got:
                started, cpu = time.perf_counter(), cpu_seconds()
            got += sum(len(records) for records in batches.values())
        elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
        await consumer.stop()
        return {"records_per_s": count / elapsed, "cpu_us_per_record": cpu / count * 1e6}

    return asyncio.run(run())


def aiokafka_latency_consumer(bootstrap: str, topic: str, count: int, ready: Any) -> list[float]:
    async def run() -> list[float]:
        from aiokafka import ConsumerRebalanceListener

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: Any) -> None:
                pass

            async def on_partitions_assigned(self, assigned: Any) -> None:
                ready.set()

        consumer = aiokafka_consumer(bootstrap, f"latency-{time.time_ns()}")
        consumer.subscribe([topic], listener=Listener())
        await consumer.start()
        latencies: list[float] = []
        while len(latencies) < count:
            batches = await consumer.getmany(timeout_ms=500, max_records=1000)
            now = time.monotonic_ns()
            for records in batches.values():
                for record in records:
                    sent = json.loads(record.value)["sent_ns"]
                    if sent:  # not the warm-up record
                        latencies.append((now - sent) / 1e6)
        await consumer.stop()
        return latencies

    return asyncio.run(run())


def aiokafka_paced_producer(bootstrap: str, topic: str, count: int) -> float:
    async def run() -> float:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **AIOKAFKA_PRODUCER)
        await producer.start()
        await producer.send_and_wait(topic, value(0), b"warm-up")
        cpu, started = cpu_seconds(), time.monotonic()
        pending = []
        for i in range(count):
            delay = started + i / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            key = f"pi_{random.randrange(KEYS)}".encode()
            pending.append(await producer.send(topic, value(i, time.monotonic_ns()), key))
        await asyncio.gather(*pending)
        await producer.stop()
        return (cpu_seconds() - cpu) / count * 1e6

    return asyncio.run(run())


def _pace(started: float, i: int) -> None:
    delay = started + i / RATE - time.monotonic()
    if delay > 0:
        time.sleep(delay)


# --- payrail's transport on the chosen client ---------------------------------------


def transport_produce(bootstrap: str, topic: str, count: int) -> dict[str, float]:
    """KafkaTransport.publish as the relay calls it: 1,000 records, every ack awaited."""

    async def run() -> dict[str, float]:
        from payrail.events.kafka import KafkaTransport
        from payrail.events.transport import Record

        producer = await KafkaTransport(bootstrap).producer()
        batch = [
            Record(topic, f"pi_{random.randrange(KEYS):08d}", value(i), {"type": "bench"})
            for i in range(BATCH)
        ]
        await producer.publish(batch[:1])
        cpu, started = cpu_seconds(), time.perf_counter()
        for _ in range(count // BATCH):
            await producer.publish(batch)
        elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
        await producer.close()
        done = count // BATCH * BATCH
        return {"records_per_s": done / elapsed, "cpu_us_per_record": cpu / done * 1e6}

    return asyncio.run(run())


def transport_consume(bootstrap: str, topic: str, count: int) -> dict[str, float]:
    """A KafkaSubscription reading batches of 1,000 and committing each."""

    async def run() -> dict[str, float]:
        from payrail.events.kafka import KafkaTransport

        member = await KafkaTransport(bootstrap).subscribe(f"t-{time.time_ns()}", [topic])
        got = 0
        started = cpu = 0.0
        while got < count:
            batch = await member.fetch(1000, max_wait=1.0)
            if batch and not got:
                started, cpu = time.perf_counter(), cpu_seconds()
            if batch:
                await member.commit(batch)
            got += len(batch)
        elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
        await member.close()
        return {"records_per_s": got / elapsed, "cpu_us_per_record": cpu / got * 1e6}

    return asyncio.run(run())


# --- harness -------------------------------------------------------------------------

CLIENTS: dict[str, dict[str, Callable[..., Any]]] = {
    "confluent-kafka": {
        "produce": confluent_produce,
        "consume": confluent_consume,
        "latency_consumer": confluent_latency_consumer,
        "paced_producer": confluent_paced_producer,
    },
    "aiokafka": {
        "produce": aiokafka_produce,
        "consume": aiokafka_consume,
        "latency_consumer": aiokafka_latency_consumer,
        "paced_producer": aiokafka_paced_producer,
    },
}
PAYRAIL = {"produce": transport_produce, "consume": transport_consume}


def _transport_child(results: Any, phase: str, args: tuple[Any, ...]) -> None:
    results.put(PAYRAIL[phase](*args))


def _child(results: Any, name: str, phase: str, args: tuple[Any, ...]) -> None:
    results.put(CLIENTS[name][phase](*args))


def in_process(name: str, phase: str, *args: Any) -> Any:
    """Run one phase in a fresh process and return its result."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    if name == "payrail":
        process = context.Process(target=_transport_child, args=(results, phase, args))
    else:
        process = context.Process(target=_child, args=(results, name, phase, args))
    process.start()
    result = results.get(timeout=600)
    process.join()
    return result


def create_topic(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(10)


def latency(name: str, bootstrap: str, topic: str, seconds: int) -> dict[str, float]:
    count = RATE * seconds
    context = multiprocessing.get_context("spawn")
    ready, results = context.Event(), context.Queue()
    consumer = context.Process(
        target=_child, args=(results, name, "latency_consumer", (bootstrap, topic, count, ready))
    )
    consumer.start()
    if not ready.wait(60):
        raise RuntimeError("the latency consumer got no partitions in 60 s")
    time.sleep(0.5)  # let its first fetches start
    producer_cpu = in_process(name, "paced_producer", bootstrap, topic, count)
    latencies = sorted(results.get(timeout=120))
    consumer.join()
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "p50_ms": quantiles[49],
        "p99_ms": quantiles[98],
        "max_ms": latencies[-1],
        "paced_producer_cpu_us_per_record": producer_cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--latency-seconds", type=int, default=20)
    parser.add_argument("--clients", nargs="+", default=list(CLIENTS))
    parser.add_argument("--rounds", type=int, default=2, help="Alternate clients this often.")
    args = parser.parse_args()

    import aiokafka
    import confluent_kafka

    print(
        f"confluent-kafka {confluent_kafka.version()} (librdkafka "
        f"{confluent_kafka.libversion()[0]}), aiokafka {aiokafka.__version__}"
    )
    rows: list[tuple[str, str, str]] = []
    with TansuBroker() as broker:
        bootstrap = broker.bootstrap_servers
        print(f"tansu on {bootstrap}, {PARTITIONS} partitions, {args.records} records of ~1 KB")
        for round_ in range(args.rounds):
            for name in args.clients:
                tag = f"{name.replace('-', '_')}_{round_}"
                figures: dict[str, str] = {}
                for mode, batch in (("stream", None), ("relay", BATCH)):
                    topic = f"bench.{tag}.{mode}"
                    create_topic(bootstrap, topic)
                    produced = in_process(name, "produce", bootstrap, topic, args.records, batch)
                    figures[f"produce {mode}"] = (
                        f"{produced['records_per_s']:>9,.0f} rec/s"
                        f"  {produced['cpu_us_per_record']:6.1f} us CPU/rec"
                    )
                consumed = in_process(
                    name, "consume", bootstrap, f"bench.{tag}.stream", args.records
                )
                figures["consume"] = (
                    f"{consumed['records_per_s']:>9,.0f} rec/s"
                    f"  {consumed['cpu_us_per_record']:6.1f} us CPU/rec"
                )
                topic = f"bench.{tag}.latency"
                create_topic(bootstrap, topic)
                measured = latency(name, bootstrap, topic, args.latency_seconds)
                figures[f"e2e @ {RATE}/s"] = (
                    f"p50 {measured['p50_ms']:6.1f} ms  p99 {measured['p99_ms']:6.1f} ms"
                    f"  max {measured['max_ms']:6.1f} ms"
                    f"  producer {measured['paced_producer_cpu_us_per_record']:5.1f} us CPU/rec"
                )
                for phase, text in figures.items():
                    rows.append((f"{name} (round {round_ + 1})", phase, text))
                    print(f"{name:16} round {round_ + 1}  {phase:16} {text}", flush=True)
        # The chosen client inside payrail's transport, as the relay and consumers use it.
        topic = "bench.payrail.relay"
        create_topic(bootstrap, topic)
        for phase, label in (
            ("produce", "KafkaTransport.publish x1000"),
            ("consume", "fetch+commit"),
        ):
            measured = in_process("payrail", phase, bootstrap, topic, args.records)
            text = (
                f"{measured['records_per_s']:>9,.0f} rec/s"
                f"  {measured['cpu_us_per_record']:6.1f} us CPU/rec"
            )
            rows.append(("payrail transport", label, text))
            print(f"payrail transport {label:28} {text}", flush=True)
    print()
    for row in rows:
        print(" | ".join(row))


if __name__ == "__main__":
    main()
