"""`payrail bench recon`: one provider report of N rows reconciled, beside plain pandas.

Set up, untimed: a merchant and a sandbox connector account; N settlement expectations
COPYed straight into `settlement_expectations` (88% charges, 10% refunds, 2% disputes;
USD, some EUR and JPY; fees as the sandbox charges them; all in one UTC day); and the
same movements as the sandbox writes Stripe's itemized balance-change report
(connectors/sandbox/reports.py), with the sandbox's own discrepancy injection (rows
dropped, amounts and fees changed, rows duplicated) and rows of references payrail does
not know, about 1% of the rows in all.

Timed: one `reconcile_provider` call in one transaction, committed: parse, COPY, the
matching statements, classification, breaks, ledger postings and events. Each size is
checked against what was injected: the breaks by type, the rows matched, the payouts, the
fees the report alone tells and the money moved to suspense. A run that reconciles wrongly
fails the benchmark.

The reference, measured in the same run on the same files: pandas reading the report and
the expectations (exported to CSV, untimed), an outer merge on reference and kind, and
the comparisons that classify the same breaks.
"""

from __future__ import annotations

import os
import random
import secrets
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from payrail.bench.harness import machine, run_on_uvloop, throwaway_postgres
from payrail.clock import SystemClock
from payrail.connectors.accounts import service as connector_accounts
from payrail.connectors.accounts.schemas import ConnectorAccountCreate
from payrail.connectors.sandbox import reports
from payrail.connectors.sandbox.processor import fee
from payrail.ids import new_id
from payrail.recon.runs import Source, reconcile_provider
from payrail.tenants.scope import Scope
from payrail.tenants.service import create_merchant
from payrail.vault.envelope import Vault
from payrail.vault.keyring import KEY_BYTES, Keyring

CLOCK = SystemClock()
TARGET_SECONDS = 15.0  # per 1,000,000 rows, on the machine measured, growing linearly
SEED = 7
# Share of the rows that gets each discrepancy: dropped, amount changed, fee changed,
# duplicated, and rows of unknown references added; 1% in all.
SHARE = 0.002
CHUNK = 50_000  # movements made, injected and written at a time
# Cumulative shares: 88% charges, 10% refunds, 2% disputes; 80% USD, 12% EUR, 8% JPY.
KINDS: tuple[tuple[reports.Kind, float], ...] = (
    ("charge", 0.88),
    ("refund", 0.98),
    ("dispute", 1.0),
)
CURRENCIES = (("usd", 0.80), ("eur", 0.92), ("jpy", 1.0))
# Expected movements are 1.00 to 999.99 (or 100 to 99,999 yen); the unknown rows are
# larger, so that the fallback rule (a sole candidate of the same amount) never pairs
# one with a dropped expectation: each stays the missing_internal break it was made as.
AMOUNTS = (100, 99_999)
UNKNOWN_AMOUNTS = (100_000, 199_999)
# The provider's id of each kind, and payrail's.
PREFIXES: dict[reports.Kind, tuple[str, str]] = {
    "charge": ("ch", "ch"),
    "refund": ("re", "re"),
    "dispute": ("du", "dp"),
}

Progress = Callable[[str], None]
T = TypeVar("T")


def parse_sizes(text: str) -> tuple[int, ...]:
    """'1000000,2000000' -> (1000000, 2000000): the report sizes to measure, in order."""
    sizes: list[int] = []
    for item in text.split(","):
        cleaned = item.strip().replace("_", "")
        if not cleaned.isdigit() or int(cleaned) < 1:
            raise ValueError(f"--sizes: '{item.strip()}' is not a number of rows (1 or more)")
        sizes.append(int(cleaned))
    return tuple(sizes)


# -- the day's movements and what the run must make of them ---------------------------------


@dataclass
class Expected:
    """What a correct run reports for the file, tallied as the discrepancies are made."""

    rows: int = 0  # in the file
    expectations: int = 0
    injected: Counter[str] = field(default_factory=Counter)  # discrepancy: rows
    breaks: Counter[str] = field(default_factory=Counter)  # break type: opened
    payouts: Counter[str] = field(default_factory=Counter)  # currency: minor units
    fees: Counter[str] = field(default_factory=Counter)  # fees only the report tells
    suspense: Counter[str] = field(default_factory=Counter)  # moved by the breaks

    @property
    def matched(self) -> int:
        """Every expectation but the dropped ones, by reference."""
        return self.expectations - self.injected["dropped"]


def _pick(rng: random.Random, shares: Sequence[tuple[T, float]]) -> T:
    drawn = rng.random()
    return next(name for name, upto in shares if drawn < upto)


def draw(
    rng: random.Random, day: date, kind: reports.Kind, amount: tuple[int, int]
) -> reports.Movement:
    """One movement of the day, as the sandbox would report it: a charge less the
    processor's fee, a refund or a dispute (money out, no fee)."""
    currency = _pick(rng, CURRENCIES)
    minor = rng.randint(*amount)
    reference = new_id(PREFIXES[kind][0])
    payment = reference if kind == "charge" else new_id("ch")
    return reports.Movement(
        id=reports.row_id(reference, 1),
        kind=kind,
        reference=reference,
        payment=payment,
        merchant_reference=f"order_{payment[3:13]}",
        brand="visa",
        currency=currency,
        gross=minor if kind == "charge" else -minor,
        fee=fee(minor) if kind == "charge" else 0,
        occurred=reports.midnight(day) + rng.randrange(86_400),
    )


def expectation(m: reports.Movement, scope: Scope, connector_account_id: str) -> tuple[object, ...]:
    """payrail's record of a movement, as payments writes it (payments/settlement.py)."""
    object_id = new_id(PREFIXES[m.kind][1])
    return (
        scope.merchant_id,
        scope.livemode,
        connector_account_id,
        m.kind,
        object_id,
        m.reference,
        m.payment,
        m.currency.upper(),
        m.gross,
        m.fee,
        datetime.fromtimestamp(m.occurred, UTC),
        f"bench:{object_id}",
    )


EXPECTATION_COLUMNS = (
    "merchant_id, livemode, connector_account_id, kind, object_id, provider_reference,"
    " payment_reference, currency, amount, fee, occurred_at, ledger_external_id"
)


def tally(
    expected: Expected,
    made: Sequence[reports.Movement],
    reported: Sequence[reports.Movement],
    unknown: Sequence[reports.Movement],
) -> None:
    """Add to `expected` what a chunk's discrepancies must become: the movements payrail
    expects (`made`), the rows the report holds of them (`reported`, after injection)
    and the rows of references payrail does not know."""
    rows: dict[str, list[reports.Movement]] = {}
    for row in reported:
        rows.setdefault(row.reference, []).append(row)
    for m in made:
        found = rows.get(m.reference, [])
        currency = m.currency.upper()
        if not found:
            expected.injected["dropped"] += 1
            expected.breaks["timing"] += 1
            continue
        row = found[0]
        if len(found) > 1:
            expected.injected["duplicated"] += 1
            expected.breaks["duplicate"] += 1
            expected.suspense[currency] += found[1].net
        elif row.gross != m.gross:
            expected.injected["amount changed"] += 1
            expected.breaks["amount_mismatch"] += 1
            expected.suspense[currency] += row.net - m.net
        elif row.fee != m.fee and m.fee != 0:
            expected.injected["fee changed"] += 1
            expected.breaks["fee_mismatch"] += 1
            expected.suspense[currency] += row.net - m.net
        elif row.fee != m.fee:
            # A fee where payrail booked none: posted as the processor's, not a break.
            expected.injected["fee added"] += 1
            expected.fees[currency] += row.fee
    for row in unknown:
        expected.injected["unknown reference"] += 1
        expected.breaks["missing_internal"] += 1
        expected.suspense[row.currency.upper()] += row.net
    expected.expectations += len(made)
    expected.rows += len(reported) + len(unknown)


def _count(rows: int) -> int:
    return round(rows * SHARE)


# -- the set-up ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    scope: Scope
    connector_account_id: str
    day: date
    report: Path
    expected: Expected


async def _merchant(url: str, vault: Vault) -> tuple[Scope, str]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await vault.prepare(conn, CLOCK.now())
        merchant = await create_merchant(conn, CLOCK, "bench recon")
        scope = Scope(merchant.id, False)
        async with conn.transaction():
            account = await connector_accounts.create_connector_account(
                conn,
                scope,
                CLOCK,
                vault,
                ConnectorAccountCreate.model_validate(
                    {
                        "provider": "sandbox",
                        "name": "bench recon",
                        "credentials": {"secret": "sbx_sk_bench_recon"},
                        # Never called: the report is a file.
                        "base_url": "http://127.0.0.1:9",
                    }
                ),
            )
    return scope, str(account["id"])


async def prepare(url: str, vault: Vault, rows: int, directory: Path, seed: int = SEED) -> Setup:
    """A merchant, its connector account, `rows` expectations of yesterday in the
    (migrated) database at `url`, and the provider's report of them in `directory`."""
    scope, connector = await _merchant(url, vault)
    day = CLOCK.now().date() - timedelta(days=1)
    report = directory / f"balance_change_from_activity.itemized.{day}.csv"
    rng = random.Random(seed)
    expected = Expected()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        async with conn.cursor().copy(
            f"COPY settlement_expectations ({EXPECTATION_COLUMNS}) FROM STDIN"
        ) as copy:
            with report.open("w", encoding="utf-8", newline="") as out:
                for start in range(0, rows, CHUNK):
                    size = min(CHUNK, rows - start)
                    made = [draw(rng, day, _pick(rng, KINDS), AMOUNTS) for _ in range(size)]
                    for m in made:
                        await copy.write_row(expectation(m, scope, connector))
                    n = _count(size)
                    asked = reports.Discrepancies(
                        seed + start, drop=n, amount=n, fee=n, duplicate=n
                    )
                    reported = reports.inject(made, asked, day).reported
                    unknown = [draw(rng, day, "charge", UNKNOWN_AMOUNTS) for _ in range(n)]
                    tally(expected, made, reported, unknown)
                    # Rows of unknown references anywhere in the day, not at its end.
                    for row in unknown:
                        reported.insert(rng.randrange(len(reported) + 1), row)
                    paid = reports.payouts(reported, day)
                    # Each chunk's payout id is the day's (reports.payout_id): one payout
                    # per currency for the whole file, the sum of the rows naming it.
                    for p in paid:
                        expected.payouts[p.currency.upper()] += p.amount
                    text = reports.stripe(reported, paid, day)
                    out.write(text if start == 0 else text.split("\r\n", 1)[1])
        # As autovacuum would have it on a table that grew over the day.
        await conn.execute("VACUUM ANALYZE settlement_expectations")
        await conn.execute("CHECKPOINT")
    return Setup(scope, connector, day, report, expected)


# -- payrail, timed ------------------------------------------------------------------------


@dataclass(frozen=True)
class Reconciled:
    seconds: float
    summary: dict[str, Any]
    load: float  # 1-minute load average when it started: the machine may be shared


async def reconcile(url: str, setup: Setup) -> Reconciled:
    """The day's report reconciled in one transaction, timed from its start to COMMIT."""
    source = Source(setup.report, "stripe", setup.report.name)
    async with await psycopg.AsyncConnection.connect(url) as conn:
        load = os.getloadavg()[0]
        started = time.perf_counter()
        async with conn.transaction():
            run, made = await reconcile_provider(
                conn, setup.scope, CLOCK, setup.connector_account_id, source, setup.day
            )
        seconds = time.perf_counter() - started
    if not made:
        raise RuntimeError(f"{setup.report} had been reconciled already")
    return Reconciled(seconds, run["summary"], load)


def failures(expected: Expected, summary: dict[str, Any]) -> list[str]:
    """What the run's summary gets wrong against what was injected; none when right."""
    wrong: list[str] = []

    def check(what: str, got: object, want: object) -> None:
        if got != want:
            wrong.append(f"{what}: {got}, expected {want}")

    matched = summary.get("matched", {})
    check("rows", summary.get("rows"), expected.rows)
    check("matched by reference", matched.get("reference"), expected.matched)
    check("matched by amount and time", matched.get("amount_window"), 0)
    check("breaks opened", summary.get("breaks_opened"), dict(sorted(expected.breaks.items())))
    check("payouts", summary.get("payouts"), dict(sorted(expected.payouts.items())))
    check("fees posted", summary.get("fees"), _nonzero(expected.fees))
    check("moved to suspense", summary.get("suspense"), _nonzero(expected.suspense))
    return wrong


def _nonzero(counts: Counter[str]) -> dict[str, int]:
    return {k: v for k, v in sorted(counts.items()) if v}


# -- pandas, the reference -----------------------------------------------------------------


def export_expectations(url: str, connector_account_id: str, path: Path) -> None:
    """The connector's expectations as CSV, for pandas: amounts in minor units."""
    with (
        psycopg.connect(url) as conn,
        conn.cursor().copy(
            "COPY (SELECT provider_reference, kind, currency, amount, fee"
            " FROM settlement_expectations WHERE connector_account_id = %s)"
            " TO STDOUT WITH (FORMAT csv, HEADER)",
            (connector_account_id,),
        ) as copy,
        path.open("wb") as out,
    ):
        for block in copy:
            out.write(block)


@dataclass(frozen=True)
class Reference:
    seconds: float  # read_csv, merge and compare
    read_seconds: float  # read_csv of both files
    breaks: dict[str, int]


def pandas_reference(report: Path, expectations: Path) -> Reference:
    """The same breaks found with plain pandas: both files read, the report's repeated
    references set aside as duplicates, an outer merge on reference and kind, and the
    matched pairs compared as payrail's rules do (breaks.pair_break)."""
    import pandas as pd  # type: ignore[import-untyped]  # a dev dependency, the bench's own

    started = time.perf_counter()
    text = {"gross": str, "fee": str, "source_id": str, "reporting_category": str}
    reported = pd.read_csv(report, usecols=[*text, "currency"], dtype=text)
    # Integers that may be missing (Int64), so that the outer merge keeps money integral.
    expected = pd.read_csv(
        expectations,
        dtype={"provider_reference": str, "kind": str, "amount": "Int64", "fee": "Int64"},
    )
    read = time.perf_counter() - started
    # The report writes every amount with its currency's decimals: without the point, the
    # digits are minor units.
    for column in ("gross", "fee"):
        reported[column] = reported[column].str.replace(".", "", regex=False).astype("Int64")
    reported["currency"] = reported["currency"].str.upper()
    repeated = reported.duplicated(["source_id", "reporting_category"])
    merged = reported[~repeated].merge(
        expected,
        how="outer",
        left_on=["source_id", "reporting_category"],
        right_on=["provider_reference", "kind"],
        indicator=True,
        suffixes=("_reported", "_expected"),
    )
    pairs = merged[merged["_merge"] == "both"]
    currency = pairs["currency_reported"] != pairs["currency_expected"]
    amount = ~currency & (pairs["gross"] != pairs["amount"])
    fees = ~currency & ~amount & (pairs["fee_reported"] != pairs["fee_expected"])
    counts = {
        "amount_mismatch": int(amount.sum()),
        "currency_mismatch": int(currency.sum()),
        "duplicate": int(repeated.sum()),
        "fee_mismatch": int((fees & (pairs["fee_expected"] != 0)).sum()),
        "missing_internal": int((merged["_merge"] == "left_only").sum()),
        "timing": int((merged["_merge"] == "right_only").sum()),
    }
    seconds = time.perf_counter() - started
    return Reference(seconds, read, {k: v for k, v in counts.items() if v})


# -- one size, and the run -----------------------------------------------------------------


@dataclass(frozen=True)
class Size:
    rows: int  # expectations, the N asked for
    setup_seconds: float
    expected: Expected
    payrail: Reconciled
    pandas: Reference
    failed: list[str]

    @property
    def per_second(self) -> float:
        return self.rows / self.payrail.seconds


def measure(url: str, vault: Vault, rows: int, directory: Path, say: Progress) -> Size:
    """One size on the (migrated) database at `url`: set up, reconciled, checked, and
    the pandas reference on the same files."""
    say(f"{rows:,} rows: expectations and the report")
    started = time.perf_counter()
    setup = run_on_uvloop(prepare(url, vault, rows, directory))
    setup_seconds = time.perf_counter() - started
    say(f"{rows:,} rows: reconciling")
    reconciled = run_on_uvloop(reconcile(url, setup))
    say(f"{rows:,} rows: pandas")
    exported = directory / "expectations.csv"
    export_expectations(url, setup.connector_account_id, exported)
    reference = pandas_reference(setup.report, exported)
    wrong = failures(setup.expected, reconciled.summary)
    if reference.breaks != _nonzero(setup.expected.breaks):
        wrong.append(f"pandas found {reference.breaks}")
    return Size(rows, setup_seconds, setup.expected, reconciled, reference, wrong)


def run(
    sizes: Sequence[int] = (1_000_000,),
    database_url: str | None = None,
    progress: Progress | None = None,
) -> tuple[list[tuple[str, str, str]], bool]:
    """Rows of (measure, figure, target / reference) for the printed table, and whether
    every run reconciled right. Each size on a throwaway server of its own (PostgreSQL's
    default, durable settings), or on `database_url`, each with a merchant of its own."""
    from payrail.db.migrate import upgrade

    say = progress or (lambda _: None)
    vault = Vault(Keyring({1: secrets.token_bytes(KEY_BYTES)}, None))
    if database_url is not None:
        upgrade(database_url)
    measured = []
    for rows in sizes:
        with tempfile.TemporaryDirectory(prefix="payrail-bench-recon-") as files:
            if database_url is None:
                with throwaway_postgres() as server:
                    upgrade(server.url())
                    measured.append(measure(server.url(), vault, rows, Path(files), say))
            else:
                measured.append(measure(database_url, vault, rows, Path(files), say))
    return table(measured), not any(size.failed for size in measured)


# -- the table -----------------------------------------------------------------------------


PHASES = ("ingest", "match", "classify")  # the run's order; others after, by name


def _phases(summary: dict[str, Any], total: float) -> str:
    phases: dict[str, float] = summary.get("seconds") or {}
    if not phases:
        return "the run's summary has no phase times"
    order = [p for p in PHASES if p in phases] + sorted(set(phases) - set(PHASES))
    named = ", ".join(f"{name} {phases[name]:.2f}" for name in order)
    rest = total - sum(phases.values())
    return f"{named}; the rest (file hash, breaks, ledger, events, COMMIT) {rest:.2f}"


def _size_rows(size: Size) -> list[tuple[str, str, str]]:
    seconds, pandas = size.payrail.seconds, size.pandas.seconds
    target = TARGET_SECONDS * size.rows / 1_000_000
    e = size.expected
    injected = ", ".join(f"{k} {v:,}" for k, v in sorted(e.injected.items()))
    breaks = ", ".join(f"{k} {v:,}" for k, v in sorted(e.breaks.items()))
    return [
        (
            f"{size.rows:,} expectations, {e.rows:,} report rows",
            f"{seconds:.2f} s",
            f"<= {target:,.2f} s: {'met' if seconds <= target else 'MISSED'},"
            f" {seconds / target:.2f} x the target",
        ),
        (
            "  payrail rows/s",
            f"{size.per_second:,.0f}/s",
            f">= {1e6 / TARGET_SECONDS:,.0f}/s; load {size.payrail.load:.1f} at start",
        ),
        ("  payrail phases, s", f"{seconds:.2f}", _phases(size.payrail.summary, seconds)),
        (
            "  pandas read_csv + merge + compare (reference)",
            f"{pandas:.2f} s",
            f"payrail / pandas: {seconds / pandas:.1f} x;"
            f" read_csv {size.pandas.read_seconds:.2f} s",
        ),
        ("  injected", f"{sum(e.injected.values()):,} rows", injected),
        (
            "  checks",
            "OK" if not size.failed else "FAIL",
            f"breaks {breaks}; matched {e.matched:,}"
            if not size.failed
            else "; ".join(size.failed),
        ),
        ("  set-up (untimed)", f"{size.setup_seconds:.1f} s", "expectations COPY, report file"),
    ]


def table(measured: Sequence[Size]) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = [("machine", machine(), "")]
    for size in measured:
        rows += _size_rows(size)
    if len(measured) > 1:
        first = measured[0]
        rows.append(
            (
                "rows/s by size",
                ", ".join(f"{s.rows:,}: {s.per_second:,.0f}/s" for s in measured),
                "relative to the first (1.00 x all along is linear): "
                + ", ".join(f"{s.per_second / first.per_second:.2f} x" for s in measured),
            )
        )
    return rows
