"""`payrail bench billing`: subscription renewals/s end to end by number of billing
workers, beside pgbench's TPC-B.

N active monthly subscriptions, each its own customer with a saved card, fall due at the
same moment; W billing-engine workers, each a process of its own (one Python process uses
one core at most), renew them through the engine's leases until nothing is due. A renewal
is what `payrail worker billing` does when a period ends: the invoice drafted, finalized
and numbered, posted to the ledger; a payment intent and charge sent to the sandbox PSP (a
thread of this process: no latency, no faults), the capture and fee posted; the invoice
paid and the payment applied in the ledger; every step's outbox events.

The subscriptions are made in bulk, since making them is not what is measured: one customer
and subscription through the real services (its first invoice paid through the sandbox),
then copied in SQL, each copy with its own customer, card (sealed under its own id) and
customer balance, as `subscriptions.service.create` leaves them once the first invoice is
paid. Before each round the subscriptions are set back to a period that has just ended, a
different one each round, so that every round bills new periods.

Beside the rate: the CPU the workers, PostgreSQL and the sandbox spent per renewal, the
database transactions per renewal, and, from one worker over a sample with timing spans
around the engine's steps, where a renewal's time goes. Each round is checked: one invoice
per subscription due, none billed twice, each paid.
"""

from __future__ import annotations

import base64
import cProfile
import functools
import logging
import os
import resource
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import structlog
import uvloop
from psycopg import sql
from psycopg.conninfo import make_conninfo

from payrail.api.context import Services
from payrail.bench.harness import machine, pgbench_tps, throwaway_postgres
from payrail.billing import collection
from payrail.billing.catalog import service as catalog
from payrail.billing.catalog.schemas import PriceCreate
from payrail.billing.engine import Engine, EngineOptions
from payrail.billing.invoices import numbering
from payrail.billing.invoices import service as invoices
from payrail.billing.subscriptions import service as subscriptions
from payrail.billing.subscriptions.schemas import SubscriptionCreate
from payrail.clock import SystemClock
from payrail.connectors.accounts import service as connector_accounts
from payrail.connectors.accounts.schemas import ConnectorAccountCreate
from payrail.connectors.sandbox import SandboxConfig
from payrail.connectors.sandbox_connector import SandboxConnector
from payrail.customers import service as customers
from payrail.customers.schemas import CustomerCreate
from payrail.db.embedded import binary
from payrail.db.pool import open_pool
from payrail.ids import new_id
from payrail.ledger import service as ledger
from payrail.ledger.verify import verify
from payrail.ops.logging import configure as configure_logging
from payrail.payments import service as payments
from payrail.tenants.scope import Scope
from payrail.tenants.service import create_merchant
from payrail.vault.envelope import Vault, card_context
from payrail.vault.keyring import KEY_BYTES, Keyring
from payrail.vault.test_cards import by_name

CLOCK = SystemClock()
SANDBOX_SECRET = "sbx_sk_bench"
CARD = "pm_card_visa"
PRICE = 1000  # USD 10.00 a month
TARGET = 1_700  # renewals/s: 1,000,000 in under 10 minutes
# Names the workers' connections, to tell when they are gone.
APPLICATION = "payrail-bench-billing"
PGBENCH_DATABASE = "payrail_bench_pgbench"

Progress = Callable[[str], None]


def parse_workers(text: str) -> tuple[int, ...]:
    """'1,2,4' -> (1, 2, 4): the worker counts to measure, in that order."""
    counts: list[int] = []
    for item in text.split(","):
        if not item.strip().isdigit() or int(item) < 1:
            raise ValueError(f"--workers: '{item.strip()}' is not a worker count (1 or more)")
        counts.append(int(item))
    return tuple(counts)


# -- the subscriptions -------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """The subscription made through the services, and what the copies are made from."""

    subscription_id: str
    customer_id: str
    payment_method_id: str


async def _first_subscription(services: Services, scope: Scope, sandbox_url: str) -> Template:
    """A connector account, a monthly price, a customer with a card, and a subscription
    whose first invoice is paid through the sandbox, as the API makes them."""
    pool, vault = services.pool, services.vault
    async with pool.connection() as conn, conn.transaction():
        await connector_accounts.create_connector_account(
            conn,
            scope,
            CLOCK,
            vault,
            ConnectorAccountCreate.model_validate(
                {
                    "provider": "sandbox",
                    "name": "bench",
                    "credentials": {"secret": SANDBOX_SECRET},
                    "base_url": sandbox_url,
                }
            ),
        )
        price = await catalog.create_price(
            conn,
            scope,
            CLOCK,
            PriceCreate.model_validate(
                {
                    "currency": "usd",
                    "unit_amount": PRICE,
                    "product_data": {"name": "Premium"},
                    "recurring": {"interval": "month"},
                }
            ),
        )
        customer = await customers.create_customer(
            conn,
            scope,
            CLOCK,
            vault,
            CustomerCreate.model_validate(
                {
                    "email": "subscriber@example.com",
                    "payment_method": CARD,
                    "invoice_settings": {"default_payment_method": CARD},
                }
            ),
        )
        sub, first = await subscriptions.create(
            conn,
            scope,
            CLOCK,
            SubscriptionCreate.model_validate(
                {"customer": customer["id"], "items": [{"price": price["id"]}]}
            ),
        )
    paid = await collection.collect(pool.connection, scope, services, first["id"], due_only=True)
    if paid["status"] != "paid":
        raise RuntimeError(f"the first invoice was not paid: it is {paid['status']}")
    return Template(
        sub["id"], customer["id"], customer["invoice_settings"]["default_payment_method"]
    )


async def _copy_rows(
    conn: psycopg.AsyncConnection[Any],
    sealer: psycopg.AsyncConnection[Any],
    vault: Vault,
    scope: Scope,
    count: int,
) -> None:
    """New ids for each copy, and its card number sealed under its own payment method
    (a sealed number opens only on the row it was sealed for), into `bench_copies`."""
    card = by_name(CARD)
    assert card is not None
    now = CLOCK.now()
    async with conn.cursor() as cur, cur.copy("COPY bench_copies FROM STDIN") as copy:
        for _ in range(count):
            pm = new_id("pm")
            key_id, sealed = await vault.seal(
                sealer, card_context(pm, scope.merchant_id), card.number, now
            )
            await copy.write_row((new_id("cus"), pm, new_id("sub"), new_id("si"), key_id, sealed))


async def _clone(
    conn: psycopg.AsyncConnection[Any],
    table: str,
    key: str,
    template: str,
    taken: dict[str, sql.Composable],
) -> None:
    """One copy of `table`'s row whose `key` is `template` per `bench_copies` row, every
    column as in the template but those `taken` from the copy's ids."""
    cur = await conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema ="
        " current_schema() AND table_name = %s AND is_identity = 'NO'"
        " AND is_generated = 'NEVER' ORDER BY ordinal_position",
        (table,),
    )
    columns = [str(row[0]) for row in await cur.fetchall()]
    values = [taken.get(c, sql.Identifier("t", c)) for c in columns]
    await conn.execute(
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} t, bench_copies c WHERE t.{} = %s").format(
            sql.Identifier(table),
            sql.SQL(", ").join(sql.Identifier(c) for c in columns),
            sql.SQL(", ").join(values),
            sql.Identifier(table),
            sql.Identifier(key),
        ),
        (template,),
    )


async def _copies(url: str, vault: Vault, scope: Scope, template: Template, count: int) -> None:
    copy = functools.partial(sql.Identifier, "c")
    null = sql.SQL("NULL")
    async with (
        await psycopg.AsyncConnection.connect(url, autocommit=True) as conn,
        await psycopg.AsyncConnection.connect(url, autocommit=True) as sealer,
    ):
        async with conn.transaction():
            await conn.execute(
                "CREATE TEMP TABLE bench_copies (customer_id text, payment_method_id text,"
                " subscription_id text, item_id text, data_key_id text, number_sealed bytea)"
                " ON COMMIT DROP"
            )
            await _copy_rows(conn, sealer, vault, scope, count)
            # A customer and its card refer to each other: the default is set last.
            await _clone(
                conn,
                "customers",
                "id",
                template.customer_id,
                {"id": copy("customer_id"), "default_payment_method_id": null},
            )
            await _clone(
                conn,
                "payment_methods",
                "id",
                template.payment_method_id,
                {
                    "id": copy("payment_method_id"),
                    "customer_id": copy("customer_id"),
                    "data_key_id": copy("data_key_id"),
                    "number_sealed": copy("number_sealed"),
                },
            )
            await conn.execute(
                "UPDATE customers SET default_payment_method_id = c.payment_method_id"
                " FROM bench_copies c WHERE customers.id = c.customer_id"
            )
            # The balance row the first invoice's finalization made.
            await _clone(
                conn,
                "customer_balances",
                "customer_id",
                template.customer_id,
                {"customer_id": copy("customer_id")},
            )
            await _clone(
                conn,
                "subscriptions",
                "id",
                template.subscription_id,
                {
                    "id": copy("subscription_id"),
                    "item_id": copy("item_id"),
                    "customer_id": copy("customer_id"),
                    "latest_invoice_id": null,
                },
            )
        await conn.execute("VACUUM ANALYZE customers, payment_methods, subscriptions")


async def prepare(url: str, vault: Vault, sandbox_url: str, count: int) -> Scope:
    """A merchant with `count` active monthly subscriptions; returns its scope."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await vault.prepare(conn, CLOCK.now())
        merchant = await create_merchant(conn, CLOCK, "bench billing")
    scope = Scope(merchant.id, False)
    pool = await open_pool(url, min_size=1, max_size=2)
    services = Services(pool=pool, clock=CLOCK, vault=vault)
    try:
        template = await _first_subscription(services, scope, sandbox_url)
    finally:
        await services.connectors.aclose()
        await pool.close()
    await _copies(url, vault, scope, template, count - 1)
    return scope


# -- a round: W workers renew what is due -----------------------------------------------


@dataclass(frozen=True)
class Checks:
    due: int
    invoices: int  # subscription_cycle invoices made in the round
    billed_twice: int  # subscriptions with more than one of them
    paid: int
    payments: int  # payment intents of the round that succeeded
    events: int  # outbox events of the round

    @property
    def ok(self) -> bool:
        return self.invoices == self.due == self.paid == self.payments and not self.billed_twice


@dataclass(frozen=True)
class Usage:
    """Counters read before and after a round; a round's figures are the differences."""

    worker_cpu: float = 0.0  # seconds, as the workers counted their own
    sandbox_cpu: float = 0.0  # this process's: the sandbox's thread (the rest waits)
    postgres_cpu: float | None = None  # the server's processes, when on this machine
    transactions: int = 0  # committed in the database
    busy: float = 0.0  # seconds of CPU busy on the whole machine, whoever used them
    elapsed: float = 0.0  # seconds of CPU time the machine had (cores x wall)

    def __sub__(self, other: Usage) -> Usage:
        pg = (
            self.postgres_cpu - other.postgres_cpu
            if self.postgres_cpu is not None and other.postgres_cpu is not None
            else None
        )
        return Usage(
            self.worker_cpu - other.worker_cpu,
            self.sandbox_cpu - other.sandbox_cpu,
            pg,
            self.transactions - other.transactions,
            self.busy - other.busy,
            self.elapsed - other.elapsed,
        )


@dataclass(frozen=True)
class Round:
    workers: int
    renewed: int  # as the workers counted them
    seconds: float
    usage: Usage
    load: float  # 1-minute load average when it started
    checks: Checks
    spans: dict[str, float] = field(default_factory=dict)  # seconds by step, sample only

    @property
    def per_second(self) -> float:
        return self.renewed / self.seconds

    def per_renewal(self, seconds: float) -> float:
        """Seconds as milliseconds per renewal."""
        return 1000 * seconds / max(self.renewed, 1)


def _postgres_cpu(postmaster: int | None) -> float | None:
    """CPU seconds of the server: the postmaster with the children it reaped (backends
    that have exited), and the children still running."""
    if postmaster is None:
        return None
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended meanwhile
        utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
        if int(entry.name) == postmaster:
            ticks += utime + stime + cutime + cstime
        elif int(fields[1]) == postmaster:
            ticks += utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    ticks = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / hz, sum(ticks) / hz


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _usage(url: str, postmaster: int | None, worker_cpu: float | None = None) -> Usage:
    """Before a round (the workers connected, waiting), or after it, given the CPU the
    workers counted (once their connections are gone: a backend's counters reach the
    statistics, and its CPU the postmaster's, when it exits)."""
    with psycopg.connect(url, autocommit=True) as conn:
        deadline = time.monotonic() + 30
        while worker_cpu is not None and conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (APPLICATION,)
        ).fetchone() != (0,):
            if time.monotonic() > deadline:
                raise RuntimeError("the workers' connections did not close")
            time.sleep(0.05)
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    busy, total = _machine_cpu()
    return Usage(worker_cpu or 0.0, _own_cpu(), _postgres_cpu(postmaster), int(row[0]), busy, total)


@dataclass(frozen=True)
class Marks:
    """The last ids' order (seq) before a round: what comes after is the round's."""

    invoices: int
    intents: int
    events: int


async def _due(url: str, scope: Scope, ended_at: datetime, limit: int | None) -> Marks:
    """Set `limit` subscriptions (all: None) back to a period that ended at `ended_at`."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            "UPDATE subscriptions SET billing_cycle_anchor = %(at)s,"
            " current_period_start = %(at)s - interval '1 month', current_period_end = %(at)s,"
            " next_action_at = %(at)s, lease_owner = NULL, lease_expires_at = NULL"
            " WHERE id IN (SELECT id FROM subscriptions WHERE merchant_id = %(merchant)s"
            " AND livemode = %(livemode)s ORDER BY seq LIMIT %(limit)s)",
            {
                "at": ended_at,
                "merchant": scope.merchant_id,
                "livemode": scope.livemode,
                "limit": limit,
            },
        )
        await conn.execute("VACUUM ANALYZE subscriptions")
        # Each round starts from the same place: nothing left to write out.
        await conn.execute("CHECKPOINT")
        values = []
        for table in ("invoices", "payment_intents", "events"):
            cur = await conn.execute(
                sql.SQL(
                    "SELECT coalesce(max(seq), 0) FROM {} WHERE merchant_id = %s AND livemode = %s"
                ).format(sql.Identifier(table)),
                (scope.merchant_id, scope.livemode),
            )
            found = await cur.fetchone()
            assert found is not None
            values.append(int(found[0]))
    return Marks(*values)


async def _checks(url: str, scope: Scope, marks: Marks, due: int) -> Checks:
    key = (scope.merchant_id, scope.livemode)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT count(*), count(*) - count(DISTINCT subscription_id),"
            " count(*) FILTER (WHERE status = 'paid') FROM invoices WHERE merchant_id = %s"
            " AND livemode = %s AND seq > %s AND billing_reason = 'subscription_cycle'",
            (*key, marks.invoices),
        )
        made = await cur.fetchone()
        cur = await conn.execute(
            "SELECT count(*) FROM payment_intents WHERE merchant_id = %s AND livemode = %s"
            " AND seq > %s AND status = 'succeeded'",
            (*key, marks.intents),
        )
        paid = await cur.fetchone()
        cur = await conn.execute(
            "SELECT count(*) FROM events WHERE merchant_id = %s AND livemode = %s AND seq > %s",
            (*key, marks.events),
        )
        events = await cur.fetchone()
    assert made is not None and paid is not None and events is not None
    return Checks(due, int(made[0]), int(made[1]), int(made[2]), int(paid[0]), int(events[0]))


def _send(process: subprocess.Popen[str], line: str) -> None:
    assert process.stdin is not None
    process.stdin.write(line + "\n")
    process.stdin.flush()


def _read(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"a billing worker exited ({process.wait()}); its errors are above")
    return line


@contextmanager
def _fleet(url: str, master_key: bytes, count: int) -> Iterator[list[subprocess.Popen[str]]]:
    """`count` worker processes kept for the whole run (starting one takes seconds); a
    round gives work to as many as it needs. They exit when their input closes."""
    env = {
        **os.environ,
        "PAYRAIL_DATABASE_URL": make_conninfo(url, application_name=APPLICATION),
        "PAYRAIL_MASTER_KEY": base64.b64encode(master_key).decode(),
    }
    command = [sys.executable, "-c", f"import {__name__} as bench; bench.worker()"]
    processes: list[subprocess.Popen[str]] = []
    try:
        for _ in range(count):
            processes.append(
                subprocess.Popen(
                    command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
                )
            )
        yield processes
    finally:
        for process in processes:
            if process.stdin is not None:
                process.stdin.close()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _count_due(url: str, scope: Scope) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM subscriptions WHERE merchant_id = %s AND livemode = %s"
            " AND next_action_at <= %s",
            (scope.merchant_id, scope.livemode, CLOCK.now()),
        ).fetchone()
    assert row is not None
    return int(row[0])


@contextmanager
def _watching(url: str, scope: Scope, marks: Marks, due: int, say: Progress) -> Iterator[None]:
    """Tell `say`, every few seconds while the block runs, how many renewals are done."""
    stop = threading.Event()

    def watch() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            while not stop.wait(5):
                row = conn.execute(
                    "SELECT count(*) FROM invoices WHERE merchant_id = %s AND livemode = %s"
                    " AND seq > %s",
                    (scope.merchant_id, scope.livemode, marks.invoices),
                ).fetchone()
                assert row is not None
                say(f"{row[0]:,} of {due:,} renewed")

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def renew(
    url: str,
    scope: Scope,
    fleet: Sequence[subprocess.Popen[str]],
    *,
    ended_at: datetime,
    limit: int | None = None,
    batch: int = 100,
    spans: bool = False,
    profile: Path | None = None,
    postmaster: int | None = None,
    progress: Progress | None = None,
) -> Round:
    """One round: `limit` subscriptions (all: None) due, the `fleet`'s workers renewing
    them until nothing is due, timed from the word go to the last one done."""
    marks = uvloop.run(_due(url, scope, ended_at, limit))
    due = _count_due(url, scope)
    job = {
        "until": CLOCK.now().isoformat(),
        "batch": batch,
        "spans": spans,
        "profile": str(profile) if profile is not None else None,
    }
    load = os.getloadavg()[0]
    for process in fleet:
        _send(process, orjson.dumps(job).decode())
    for process in fleet:
        if _read(process).strip() != "ready":
            raise RuntimeError("a billing worker said something other than 'ready'")
    before = _usage(url, postmaster)
    watch = _watching(url, scope, marks, due, progress) if progress else nullcontext()
    with watch:
        started = time.perf_counter()
        for process in fleet:
            _send(process, "go")
        done = [orjson.loads(_read(process)) for process in fleet]
        seconds = time.perf_counter() - started
    after = _usage(url, postmaster, sum(d["cpu"] for d in done))
    checks = uvloop.run(_checks(url, scope, marks, due))
    measured: dict[str, float] = {}
    for d in done:
        for name, value in d["spans"].items():
            measured[name] = measured.get(name, 0.0) + value
    renewed = sum(int(d["renewed"]) for d in done)
    return Round(len(fleet), renewed, seconds, after - before, load, checks, measured)


# -- the worker's process ----------------------------------------------------------------

# (name, owner, attribute): the engine's steps timed in the sample round. Nested: a
# renewal's step drafts and finalizes (which numbers) the invoice; collecting it makes the
# payment (which calls the PSP) and settles it; the ledger is posted to in all three.
SPANS: tuple[tuple[str, Any, str], ...] = (
    ("step", subscriptions, "apply_step"),
    ("draft", invoices, "draft"),
    ("finalize", invoices, "finalize"),
    ("number", numbering, "next_invoice_number"),
    ("collect", collection, "collect"),
    ("payment", payments, "create"),
    ("psp", SandboxConnector, "authorize"),
    ("settle", collection, "settle"),
    ("ledger", ledger, "post_transactions"),
    ("sql", psycopg.AsyncCursor, "execute"),
)


def _timed(
    spent: dict[str, float], name: str, step: Callable[..., Awaitable[Any]]
) -> Callable[..., Awaitable[Any]]:
    calls = f"{name}_calls"

    @functools.wraps(step)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await step(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - started
            spent[calls] += 1

    return timed


@contextmanager
def _spans(enabled: bool) -> Iterator[dict[str, float]]:
    """Wall time by step, and calls (`<step>_calls`), while the block runs (nothing when
    not `enabled`). A worker renews one subscription at a time, so in one worker the
    steps never overlap but where one calls another."""
    spent: dict[str, float] = {}
    originals = [(owner, attribute, getattr(owner, attribute)) for _, owner, attribute in SPANS]
    if enabled:
        for name, owner, attribute in SPANS:
            spent[name] = spent[f"{name}_calls"] = 0.0
            setattr(owner, attribute, _timed(spent, name, getattr(owner, attribute)))
    try:
        yield spent
    finally:
        for owner, attribute, original in originals:
            setattr(owner, attribute, original)


async def _work(url: str, job: dict[str, Any]) -> dict[str, Any]:
    """One round's work: connect, say `ready`, renew on the word go, disconnect (so that
    the server's statistics have this round's counts), tell what was done."""
    pool = await open_pool(url, min_size=2, max_size=2)
    services = Services(pool=pool, clock=CLOCK, vault=Vault(Keyring.from_env(Path.cwd())))
    engine = Engine(pool, services, EngineOptions(batch=job["batch"]))
    profiler = cProfile.Profile() if job["profile"] else None
    try:
        with _spans(job["spans"]) as spent:
            _write("ready")
            sys.stdin.readline()  # the word go
            cpu, started = _own_cpu(), time.perf_counter()
            if profiler is not None:
                profiler.enable()
            done = await engine.run_until(datetime.fromisoformat(job["until"]))
            if profiler is not None:
                profiler.disable()
            seconds, cpu = time.perf_counter() - started, _own_cpu() - cpu
    finally:
        await services.connectors.aclose()
        await pool.close()
    if profiler is not None:
        profiler.dump_stats(job["profile"])
    return {"renewed": done.renewed, "seconds": seconds, "cpu": cpu, "spans": spent}


def _write(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def worker() -> None:
    """A billing worker's process, started by `_fleet`: a job per line from its parent,
    each answered with what was done, as JSON; it exits when its input closes."""
    configure_logging(logging.WARNING)
    # Standard output is the parent's line to this process: what is logged goes beside it.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    url = os.environ["PAYRAIL_DATABASE_URL"]
    while line := sys.stdin.readline():
        _write(orjson.dumps(uvloop.run(_work(url, orjson.loads(line)))).decode())


@dataclass(frozen=True)
class Outcome:
    subscriptions: int
    rounds: list[Round]  # one per worker count
    sample: Round  # one worker, timing spans on
    profiled: Round | None  # one worker under cProfile
    captured: int  # payments the sandbox captured, the first invoice's included
    charged_twice: int  # references the sandbox captured more than once
    succeeded: int  # the merchant's payment intents that succeeded
    ledger_ok: bool


def _captured(sandbox_url: str) -> tuple[int, int]:
    record = httpx.get(
        f"{sandbox_url}/sandbox/record",
        headers={"Authorization": f"Bearer {SANDBOX_SECRET}"},
        timeout=300,
    ).json()
    references: dict[str, int] = {}
    for payment in record["payments"]:
        if payment["status"] == "captured":
            references[payment["reference"]] = references.get(payment["reference"], 0) + 1
    return sum(references.values()), sum(1 for n in references.values() if n > 1)


async def _end_checks(url: str, scope: Scope) -> tuple[int, bool]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM payment_intents WHERE merchant_id = %s AND livemode = %s"
            " AND status = 'succeeded'",
            (scope.merchant_id, scope.livemode),
        )
        found = await cur.fetchone()
        report = await verify(conn)
    assert found is not None
    return int(found[0]), report.ok


def _labelled(say: Progress, what: str) -> Progress:
    return lambda news: say(f"{what}: {news}")


def measure(
    url: str,
    master_key: bytes,
    *,
    subscriptions: int,
    workers: Sequence[int],
    sample: int,
    batch: int = 100,
    profile: Path | None = None,
    postmaster: int | None = None,
    progress: Progress | None = None,
) -> Outcome:
    """The subscriptions made on the (migrated) database at `url`, then a round per
    worker count, the timed sample and the profiled one; the sandbox runs meanwhile."""
    say = progress or (lambda _: None)
    rounds = len(workers) + 1 + (profile is not None)
    # Periods that ended before the setup began, a different one per round, the latest
    # last: each round bills a period of its own, and the one after it ends a month on.
    start = CLOCK.now().replace(microsecond=0)
    ends = [start - timedelta(hours=rounds - index) for index in range(rounds)]
    vault = Vault(Keyring({1: master_key}, None))
    common: dict[str, Any] = {"batch": batch, "postmaster": postmaster}
    # Imported here, as the sandbox is this process's alone: workers import this module.
    from payrail.connectors.sandbox.server import run_sandbox

    with (
        run_sandbox(SandboxConfig(secret=SANDBOX_SECRET), CLOCK) as sandbox_url,
        _fleet(url, master_key, max(workers)) as fleet,
    ):
        say(f"making {subscriptions:,} subscriptions")
        scope = uvloop.run(prepare(url, vault, sandbox_url, subscriptions))
        measured = []
        for index, count in enumerate(workers):
            what = f"renewing with {_plural(count)}"
            say(what)
            measured.append(
                renew(
                    url,
                    scope,
                    fleet[:count],
                    ended_at=ends[index],
                    progress=_labelled(say, what),
                    **common,
                )
            )
        say(f"timing the steps of {sample:,} renewals in one worker")
        one = fleet[:1]
        timed = renew(
            url, scope, one, ended_at=ends[len(workers)], limit=sample, spans=True, **common
        )
        profiled = None
        if profile is not None:
            say(f"profiling {sample:,} renewals in one worker")
            profiled = renew(
                url, scope, one, ended_at=ends[-1], limit=sample, profile=profile, **common
            )
        say("checking the sandbox's record and the ledger")
        captured, twice = _captured(sandbox_url)
    succeeded, ledger_ok = uvloop.run(_end_checks(url, scope))
    return Outcome(subscriptions, measured, timed, profiled, captured, twice, succeeded, ledger_ok)


def _postmaster(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().split()[0])


def _pgbench_beside(url: str, clients: int, seconds: int, scale: int = 10) -> float:
    """pgbench's TPC-B tps on the server of `url`, in a database of its own made for it
    (harness.pgbench_tps does the same on a throwaway server)."""
    name = sql.Identifier(PGBENCH_DATABASE)
    with psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(name))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
    target = make_conninfo(url, dbname=PGBENCH_DATABASE)
    try:
        pgbench = str(binary("pgbench"))
        subprocess.run(
            [pgbench, "-i", "-q", "-s", str(scale), target], check=True, capture_output=True
        )
        out = subprocess.run(
            [pgbench, "-c", str(clients), "-j", "2", "-T", str(seconds), target],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        with psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(name))
    for line in out.splitlines():
        if line.startswith("tps = "):
            return float(line.split()[2])
    raise RuntimeError(f"pgbench printed no tps:\n{out}")


def run(
    subscriptions: int = 10_000,
    workers: Sequence[int] = (1, 2, 4),
    database_url: str | None = None,
    sample: int = 2_000,
    batch: int = 100,
    pgbench_seconds: int = 10,
    profile: Path | None = None,
    progress: Progress | None = None,
) -> list[tuple[str, str, str]]:
    """Rows of (measure, figure, target / reference) for the printed table. On a
    `database_url` of another server its user must be allowed to create a database (for
    pgbench) and to CHECKPOINT, and the server's CPU is not counted."""
    # Imported here: migrations are this process's business, and workers import this module.
    from payrail.db.migrate import upgrade

    say = progress or (lambda _: None)
    # The sandbox serves from this process: a line for every payment would drown the table.
    configure_logging(logging.WARNING)
    key = secrets.token_bytes(KEY_BYTES)
    clients = max(workers)
    options: dict[str, Any] = {
        "subscriptions": subscriptions,
        "workers": workers,
        "sample": min(sample, subscriptions),
        "batch": batch,
        "profile": profile,
        "progress": progress,
    }
    if database_url is None:
        with throwaway_postgres() as server:
            url = server.url()
            upgrade(url)
            say("measuring pgbench (the reference)")
            tps = pgbench_tps(server, clients=clients, seconds=pgbench_seconds)
            outcome = measure(url, key, postmaster=_postmaster(server.pgdata), **options)
    else:
        upgrade(database_url)
        say("measuring pgbench (the reference)")
        tps = _pgbench_beside(database_url, clients, pgbench_seconds)
        outcome = measure(database_url, key, **options)
    return rows(outcome, tps, clients, profile)


# -- the table ---------------------------------------------------------------------------


def _plural(workers: int) -> str:
    return f"{workers} worker{'s' if workers > 1 else ''}"


def _cpu_rows(r: Round, label: str) -> list[tuple[str, str, str]]:
    u = r.usage
    pg = f"{r.per_renewal(u.postgres_cpu):.2f}" if u.postgres_cpu is not None else "n/a"
    total = u.worker_cpu + u.sandbox_cpu + (u.postgres_cpu or 0.0)
    busy = u.busy / u.elapsed if u.elapsed else 0.0
    return [
        (
            f"  CPU per renewal, {label}",
            f"{r.per_renewal(total):.2f} ms" + ("" if u.postgres_cpu is not None else " + server"),
            f"workers {r.per_renewal(u.worker_cpu):.2f}, PostgreSQL {pg}, sandbox"
            f" {r.per_renewal(u.sandbox_cpu):.2f}; machine {busy:.0%} busy, load {r.load:.1f}"
            " at start",
        ),
        (
            f"  database per renewal, {label}",
            f"{u.transactions / max(r.renewed, 1):.1f} transactions",
            f"{r.checks.events / max(r.checks.invoices, 1):.1f} outbox events",
        ),
    ]


def _check_row(r: Round, label: str) -> tuple[str, str, str]:
    c = r.checks
    return (
        f"  checks, {label}",
        f"{c.invoices:,} invoices / {c.due:,} due",
        f"{'OK' if c.ok else 'FAILED'}: {c.billed_twice} billed twice, {c.paid:,} paid,"
        f" {c.payments:,} payments succeeded; the workers counted {r.renewed:,}",
    )


def _round_rows(r: Round, tps: float) -> list[tuple[str, str, str]]:
    label = _plural(r.workers)
    minutes = 1_000_000 / r.per_second / 60
    return [
        (
            f"renewals, {label}",
            f"{r.per_second:,.0f}/s",
            f">= {TARGET:,}/s: {r.per_second / TARGET:.2f} x; 1,000,000 in {minutes:,.0f} min;"
            f" {r.per_second / tps:.3f} x pgbench tps",
        ),
        *_cpu_rows(r, label),
        _check_row(r, label),
    ]


def _span_rows(r: Round) -> list[tuple[str, str, str]]:
    s, per = r.spans, r.per_renewal
    step_rest = s["step"] - s["draft"] - s["finalize"]
    collect_rest = s["collect"] - s["payment"] - s["settle"]
    engine_rest = r.seconds - s["step"] - s["collect"]
    return [
        (
            f"time per renewal, 1 worker, sample of {r.checks.due:,}",
            f"{per(r.seconds):.2f} ms",
            f"{r.per_second:,.0f}/s with timing spans on",
        ),
        (
            "  step (apply_step): invoice made",
            f"{per(s['step']):.2f} ms",
            f"draft {per(s['draft']):.2f}, finalize {per(s['finalize']):.2f} (number"
            f" {per(s['number']):.2f}), subscription saved and its event {per(step_rest):.2f}",
        ),
        (
            "  payment: intent, charge, sandbox",
            f"{per(s['payment']):.2f} ms",
            f"the sandbox's HTTP round trip {per(s['psp']):.2f}",
        ),
        ("  invoice paid: payment applied", f"{per(s['settle']):.2f} ms", ""),
        ("  collection's own reads and locks", f"{per(collect_rest):.2f} ms", ""),
        (
            "  engine: claims, locks, leases, commits",
            f"{per(engine_rest):.2f} ms",
            "the step's transaction around apply_step, its lease writes and COMMIT",
        ),
        (
            "  ledger postings (within the above)",
            f"{per(s['ledger']):.2f} ms",
            f"{s['ledger_calls'] / r.renewed:.0f} calls",
        ),
        (
            "  SQL statements (within the above)",
            f"{per(s['sql']):.2f} ms",
            f"{s['sql_calls'] / r.renewed:.0f} statements, {1e6 * s['sql'] / s['sql_calls']:.0f}"
            " µs each, client and server; BEGIN and COMMIT not counted",
        ),
        *_cpu_rows(r, "sample"),
        _check_row(r, "sample"),
    ]


def rows(
    outcome: Outcome, tps: float, clients: int, profile: Path | None
) -> list[tuple[str, str, str]]:
    first = outcome.rounds[0]
    table: list[tuple[str, str, str]] = [
        ("machine", machine(), ""),
        ("pgbench TPC-B (reference)", f"{tps:,.0f} tps", f"{clients} clients, same server"),
        (
            "subscriptions due each round",
            f"{outcome.subscriptions:,}",
            "monthly, USD 10.00, each its own customer and card",
        ),
    ]
    for r in outcome.rounds:
        table += _round_rows(r, tps)
    table.append(
        (
            "rate by workers",
            ", ".join(
                f"{r.workers}: {r.per_second / first.per_second:.2f} x" for r in outcome.rounds
            ),
            f"relative to {_plural(first.workers)}",
        )
    )
    table += _span_rows(outcome.sample)
    if outcome.profiled is not None and profile is not None:
        p = outcome.profiled
        table.append(
            (
                "cProfile, 1 worker",
                f"{p.per_second:,.0f}/s",
                f"{p.renewed:,} renewals; stats in {profile} (python -m pstats)",
            )
        )
    table += [
        (
            "sandbox captured / payments succeeded",
            f"{outcome.captured:,} / {outcome.succeeded:,}",
            f"{outcome.charged_twice} charged twice",
        ),
        ("ledger verify after the run", "OK" if outcome.ledger_ok else "DRIFT", ""),
    ]
    return table
