"""The Kafka transport, on confluent-kafka (librdkafka): chosen over aiokafka by the
measurement in scripts/kafka_client_choice.py; docs/kafka.md has the figures and the
settings below with their reasons.

It keeps transport.py's contract with a Kafka broker:
- one topic per aggregate type, created here with `partitions` partitions before the
  first record goes to it (a broker's auto-creation would pick its own count, and the
  partition of a key depends on it); the key is the aggregate id, so an aggregate's
  records share a partition and keep their order there;
- `publish` returns once the broker has acknowledged every record (acks=all) and raises
  TransportUnavailable within `publish_timeout` seconds otherwise, so a relay's lease
  outlives any publish;
- a subscription is one member of a consumer group that never commits on its own: only
  `commit` moves the group's offsets, so what was fetched but not committed is fetched
  again by whoever holds the partition next.

librdkafka does its network work in its own threads. The producer's acknowledgements
arrive on a polling thread and are handed to the event loop; each subscription makes its
blocking consumer calls on one thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka import Producer as RdProducer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from payrail.events.transport import (
    TOPIC_PREFIX,
    Delivered,
    Record,
    TransportUnavailable,
)

log = logging.getLogger(__name__)

BOOTSTRAP_ENV = "PAYRAIL_KAFKA_BOOTSTRAP_SERVERS"
# Set to 1 against a Kafka cluster: the idempotent producer keeps order across retries
# without limiting requests in flight. Tansu has no idempotent producer (docs/kafka.md).
IDEMPOTENCE_ENV = "PAYRAIL_KAFKA_IDEMPOTENCE"

# Every payrail topic, including those created after the subscription (librdkafka reads
# a leading ^ as a regular expression and matches new topics on metadata refresh).
ALL_TOPICS = "^" + TOPIC_PREFIX.replace(".", r"\.") + ".*"

# A group member that could not commit because its partition had moved on: the next
# owner fetches those records again, as the contract says; nothing to raise.
_LOST_PARTITION = {
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError._NO_OFFSET,
    KafkaError._ASSIGNMENT_LOST,
}


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str
    partitions: int = 8
    # Seconds; within this a publish is acknowledged or raises. Under 10 s, the relay's
    # lease; librdkafka gives up on the records at the same time (message.timeout.ms).
    publish_timeout: float = 5.0
    # A member that stops heartbeating loses its partitions after this long. 6 s is the
    # least a Kafka broker accepts by default (group.min.session.timeout.ms); Tansu also
    # holds a JoinGroup for about half of it, so it sets how fast a member starts.
    session_timeout_ms: int = 6_000
    # How long the broker may hold a fetch that finds nothing. Tansu answers when it
    # expires rather than when a record arrives: this bounds the added latency.
    fetch_wait_ms: int = 50
    # How soon a pattern subscription sees a topic created after it.
    metadata_refresh_ms: int = 5_000
    idempotence: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KafkaSettings | None:
        """The settings when PAYRAIL_KAFKA_BOOTSTRAP_SERVERS is set, else None."""
        env = os.environ if env is None else env
        servers = env.get(BOOTSTRAP_ENV, "").strip()
        if not servers:
            return None
        return cls(servers, idempotence=env.get(IDEMPOTENCE_ENV, "") in {"1", "true", "yes"})

    def common(self) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": "payrail",
            # After a broker restart, reconnect within a second, not librdkafka's 10 s.
            "reconnect.backoff.max.ms": 1000,
            "topic.metadata.refresh.interval.ms": self.metadata_refresh_ms,
            "logger": log,
        }

    def producer_config(self) -> dict[str, Any]:
        timeout_ms = int(self.publish_timeout * 1000)
        config = {
            **self.common(),
            "acks": "all",
            "enable.idempotence": self.idempotence,
            # Without idempotence a retried request could land after the next one and
            # reorder a partition; one request in flight per connection rules that out.
            # It costs little: one request carries every partition's batch.
            "max.in.flight.requests.per.connection": 5 if self.idempotence else 1,
            "linger.ms": 5,
            "batch.size": 1_000_000,
            "message.timeout.ms": timeout_ms,
            "socket.timeout.ms": timeout_ms,
            # Topics are created here with the right partition count; never by a
            # metadata request with the broker's default count.
            "allow.auto.create.topics": False,
            # The Java client's partitioner: a key lands on the same partition whichever
            # client published it.
            "partitioner": "murmur2_random",
        }
        return config

    def consumer_config(self, group: str) -> dict[str, Any]:
        return {
            **self.common(),
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            # A new group, or a partition with no committed offset, starts at the
            # beginning: events published before the group existed are not skipped.
            "auto.offset.reset": "earliest",
            "session.timeout.ms": self.session_timeout_ms,
            "heartbeat.interval.ms": max(self.session_timeout_ms // 5, 100),
            "fetch.wait.max.ms": self.fetch_wait_ms,
            "allow.auto.create.topics": False,
        }


class KafkaTransport:
    name = "kafka"

    def __init__(self, settings: KafkaSettings | str) -> None:
        self.settings = KafkaSettings(settings) if isinstance(settings, str) else settings
        self._admin: AdminClient | None = None
        self._known_topics: set[str] = set()
        self._topics_lock = asyncio.Lock()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KafkaTransport | None:
        settings = KafkaSettings.from_env(env)
        return cls(settings) if settings is not None else None

    async def producer(self) -> KafkaProducer:
        return KafkaProducer(self, RdProducer(self.settings.producer_config()))

    async def subscribe(self, group: str, topics: Sequence[str] | None) -> KafkaSubscription:
        """A new member of `group`. Named topics are created first (with the partition
        count payrail publishes with) so that the member can be assigned them at once."""
        if topics is not None:
            await self.ensure_topics(topics, time.monotonic() + self.settings.publish_timeout)
        consumer = Consumer(self.settings.consumer_config(group))
        subscription = KafkaSubscription(consumer, group)
        await subscription._call(consumer.subscribe, list(topics) if topics else [ALL_TOPICS])
        return subscription

    async def ensure_topics(self, topics: Sequence[str] | set[str], deadline: float) -> None:
        """Create the topics that this process has not seen created yet."""
        missing = set(topics) - self._known_topics
        if not missing:
            return
        async with self._topics_lock:
            missing -= self._known_topics
            if not missing:
                return
            if self._admin is None:
                self._admin = AdminClient(
                    {"bootstrap.servers": self.settings.bootstrap_servers, "client.id": "payrail"},
                    logger=log,
                )
            timeout = max(deadline - time.monotonic(), 0.1)
            futures = self._admin.create_topics(
                [NewTopic(topic, self.settings.partitions, 1) for topic in sorted(missing)],
                operation_timeout=timeout,
                request_timeout=timeout,
            )
            for topic, future in futures.items():
                try:
                    await asyncio.wait_for(asyncio.wrap_future(future), timeout)
                except KafkaException as exc:
                    error = exc.args[0]
                    if error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise TransportUnavailable(f"cannot create topic {topic}: {error}") from exc
                except TimeoutError as exc:
                    raise TransportUnavailable(f"cannot create topic {topic}: timed out") from exc
                self._known_topics.add(topic)

    def forget_topics(self) -> None:
        """After a failed publish: the broker may have lost its topics (a bundled broker
        restarted with memory storage), so the next publish makes sure of them again."""
        self._known_topics.clear()


class _Acks:
    """The acknowledgements of one publish, counted on the polling thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, expected: int) -> None:
        self.loop = loop
        self.waiting = expected
        self.done: asyncio.Future[None] = loop.create_future()

    def on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._tell(self._fail, f"{message.topic()}: {error}")
            return
        self.waiting -= 1  # only the polling thread counts, so no lock
        if self.waiting == 0:
            self._tell(self._succeed)

    def _tell(self, callback: Any, *args: Any) -> None:
        # A closed loop: nobody waits for this publish any more.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(callback, *args)

    def _succeed(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def _fail(self, reason: str) -> None:
        if not self.done.done():
            self.done.set_exception(TransportUnavailable(reason))


class KafkaProducer:
    def __init__(self, transport: KafkaTransport, producer: RdProducer) -> None:
        self._transport = transport
        self._producer = producer
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="kafka-producer", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.05)

    async def publish(self, records: Sequence[Record]) -> None:
        if not records:
            return
        deadline = time.monotonic() + self._transport.settings.publish_timeout
        try:
            await self._transport.ensure_topics({record.topic for record in records}, deadline)
            acks = _Acks(asyncio.get_running_loop(), len(records))
            for record in records:
                await self._produce(record, acks, deadline)
            remaining = deadline - time.monotonic()
            # librdkafka fails the records at the same deadline; the margin is for the
            # report to reach this loop.
            await asyncio.wait_for(acks.done, max(remaining, 0) + 0.5)
        except (TransportUnavailable, TimeoutError) as exc:
            self._give_up()
            if isinstance(exc, TransportUnavailable):
                raise
            raise TransportUnavailable(f"no acknowledgement in {self._deadline_text()}") from exc

    async def _produce(self, record: Record, acks: _Acks, deadline: float) -> None:
        headers: list[tuple[str, str | bytes | None]] = [
            (name, value.encode()) for name, value in record.headers.items()
        ]
        while True:
            try:
                self._producer.produce(
                    record.topic,
                    record.value,
                    record.key.encode(),
                    on_delivery=acks.on_delivery,
                    headers=headers or None,
                )
                return
            except BufferError:
                # librdkafka's queue is full: wait for acknowledgements to drain it.
                if time.monotonic() >= deadline:
                    raise TransportUnavailable("the producer's queue stayed full") from None
                await asyncio.sleep(0.01)
            except KafkaException as exc:
                raise TransportUnavailable(str(exc.args[0])) from exc

    def _give_up(self) -> None:
        """Drop what this producer still holds unsent. The caller publishes everything
        again; a record of this attempt sent after an earlier one had failed could
        otherwise land ahead of that one's second copy and reorder its aggregate."""
        self._producer.purge(in_queue=True, in_flight=False, blocking=False)
        self._transport.forget_topics()

    def _deadline_text(self) -> str:
        return f"{self._transport.settings.publish_timeout:g} s"

    async def close(self) -> None:
        # The polling thread stops first: acknowledgements are counted on one thread
        # only, and flush serves the last of them.
        self._closed.set()
        await asyncio.to_thread(self._poller.join)
        await asyncio.to_thread(self._producer.flush, self._transport.settings.publish_timeout)


class KafkaSubscription:
    """One consumer-group member. Every call into librdkafka's consumer runs on the
    member's own thread, one at a time, as librdkafka expects of a consumer."""

    def __init__(self, consumer: Consumer, group: str) -> None:
        self._consumer = consumer
        self._group = group
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"kafka-{group}")
        self._closed = False

    async def _call(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)

    async def fetch(self, max_records: int, max_wait: float) -> list[Delivered]:
        messages: list[Message] = await self._call(self._fetch, max_records, max_wait)
        delivered = []
        for message in messages:
            error = message.error()
            if error is not None:
                # Broker trouble (down, restarting, topic gone) arrives here; librdkafka
                # reconnects and fetches again on its own. A pattern that matches no
                # topic yet (a fresh broker) is not trouble.
                level = (
                    logging.DEBUG
                    if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
                    else logging.WARNING
                )
                log.log(level, "kafka consumer %s: %s", self._group, error)
                continue
            delivered.append(_delivered(message))
        return delivered

    def _fetch(self, max_records: int, timeout: float) -> list[Message]:
        # consume(n, t) waits until it has n records or t has passed; waiting only for
        # the first and taking what else is there keeps latency low under light load.
        first = self._consumer.consume(1, timeout)
        if not first or max_records <= 1:
            return first
        return first + self._consumer.consume(max_records - 1, 0)

    async def commit(self, delivered: Sequence[Delivered]) -> None:
        await self._call(self._commit, delivered)

    def _commit(self, delivered: Sequence[Delivered]) -> None:
        upto: dict[tuple[str, int], int] = {}
        for record in delivered:
            where = (record.topic, record.partition)
            upto[where] = max(upto.get(where, -1), record.offset + 1)
        # Only partitions this member still holds: a revoked one's records go to its new
        # owner uncommitted, and a stale commit must not move that owner's offset back.
        held = {(tp.topic, tp.partition) for tp in self._consumer.assignment()}
        offsets = [
            TopicPartition(t, p, offset) for (t, p), offset in upto.items() if (t, p) in held
        ]
        if not offsets:
            return
        try:
            results = self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() in _LOST_PARTITION:
                log.info(
                    "kafka consumer %s: commit dropped, partitions moved: %s", self._group, error
                )
                return
            raise TransportUnavailable(f"commit failed: {error}") from exc
        for result in results:
            if result.error is not None and result.error.code() not in _LOST_PARTITION:
                raise TransportUnavailable(f"commit failed for {result}: {result.error}")

    async def lag(self) -> dict[tuple[str, int], int]:
        lag: dict[tuple[str, int], int] = await self._call(self._lag)
        return lag

    def _lag(self) -> dict[tuple[str, int], int]:
        held = self._consumer.assignment()
        if not held:
            return {}
        try:
            committed = self._consumer.committed(held, timeout=5)
            positions = {
                (tp.topic, tp.partition): tp.offset for tp in self._consumer.position(held)
            }
            lag = {}
            for tp in committed:
                where = (tp.topic, tp.partition)
                low, listed = self._consumer.get_watermark_offsets(tp, timeout=5)
                # Tansu answers ListOffsets with the last batch's first offset + 1, not
                # the log's end; the end its fetches report, and how far this member has
                # read, are exact. The largest of the three is the closest.
                _, fetched = self._consumer.get_watermark_offsets(tp, cached=True)
                end = max(listed, fetched, positions.get(where, -1))
                start = tp.offset if tp.offset >= 0 else low  # nothing committed yet
                lag[where] = max(end - start, 0)
        except KafkaException as exc:
            raise TransportUnavailable(f"lag: {exc.args[0]}") from exc
        return lag

    async def assignment(self) -> list[tuple[str, int]]:
        """The (topic, partition) pairs this member holds now."""
        held: list[TopicPartition] = await self._call(self._consumer.assignment)
        return sorted((tp.topic, tp.partition) for tp in held)

    async def close(self) -> None:
        """Leave the group, so that its partitions are handed over at once rather than
        after the session times out. Uncommitted records go to their next owner."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._call(self._consumer.close)
        finally:
            self._thread.shutdown(wait=False)


def _delivered(message: Message) -> Delivered:
    key = message.key()
    headers = message.headers() or []
    pairs = headers.items() if isinstance(headers, dict) else headers
    return Delivered(
        topic=message.topic() or "",
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        key=key.decode() if key is not None else "",
        value=message.value() or b"",
        headers={
            name: value.decode() if isinstance(value, bytes) else (value or "")
            for name, value in pairs
        },
    )
