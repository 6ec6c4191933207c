"""A reconciliation run: one provider report (or bank statement) for one day, ingested,
matched, its differences classified into breaks, and the ledger brought to tie out; all
in one database transaction, so that a bad file or a crash leaves nothing behind, and
once per (connector account, day): the same file again returns the run it made.

Provider runs tie payrail's expectations (payments/settlement.py) to the provider's
rows. Bank runs tie the payouts the provider reports to the lines of the merchant's bank
statement: payrail's ledger, the provider and the bank, three ways.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import IO, Any, Literal

import orjson

from payrail.clock import Clock
from payrail.errors import Conflict, InvalidRequest
from payrail.events.outbox import OutboxEvent, emit
from payrail.ids import new_id
from payrail.recon import breaks, matching, partitions, postings
from payrail.recon import repository as repo
from payrail.recon.formats import PARSERS, read_bank_statement
from payrail.recon.formats.common import ProviderRow
from payrail.recon.objects import break_object, run_object
from payrail.tenants.scope import Scope

Conn = repo.Conn
Stage = Literal["provider", "bank"]


@dataclass(frozen=True, slots=True)
class Rules:
    """How a run matches and when it gives up waiting; per run, defaults for all."""

    # Rows of earlier reports still unmatched are tried again for this many days.
    lookback_days: int = 7
    # The fallback rule's window (amount, currency and kind, within this time); None: off.
    fallback_window: timedelta | None = timedelta(days=2)
    # A missing item is late (a timing break) for this many days, then missing.
    timing_days: int = 3
    # A payout is looked for at the bank this many days after its report.
    bank_window_days: int = 5


DEFAULT_RULES = Rules()


@dataclass(frozen=True, slots=True)
class Source:
    """A report file: where it is, what format, and the name errors call it by."""

    path: Path
    format: str
    name: str


def content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(slots=True)
class _Outcome:
    """What a run did, as it goes: the breaks it opened and changed, the money it moves
    per currency, for the summary and the ledger."""

    opened: list[dict[str, Any]] = field(default_factory=list)
    changed: list[tuple[breaks.Change, dict[str, Any]]] = field(default_factory=list)
    movements: dict[str, postings.Movements] = field(default_factory=dict)
    payouts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def money(self, currency: str, connector_account_id: str | None) -> postings.Movements:
        if currency not in self.movements:
            self.movements[currency] = postings.Movements(connector_account_id)
        return self.movements[currency]


class _Run:
    def __init__(
        self,
        conn: Conn,
        scope: Scope,
        clock: Clock,
        run_id: str,
        report_date: date,
        connector_account_id: str | None,
        rules: Rules,
    ) -> None:
        self.conn, self.scope, self.clock = conn, scope, clock
        self.run_id, self.report_date = run_id, report_date
        self.connector_account_id = connector_account_id
        self.rules = rules
        self.out = _Outcome()

    def open(
        self, stage: Stage, type: breaks.BreakType, currency: str, reference: str, **item: Any
    ) -> dict[str, Any]:
        now = self.clock.now()
        row = {
            "id": new_id("rbk"),
            "merchant_id": self.scope.merchant_id,
            "livemode": self.scope.livemode,
            "connector_account_id": self.connector_account_id,
            "stage": stage,
            "type": type,
            "status": "open",
            "reference": reference,
            "currency": currency,
            "expected_net": 0,
            "reported_net": 0,
            "suspense_amount": 0,
            "opened_run_id": self.run_id,
            "created_at": now,
            "updated_at": now,
            **item,
        }
        self.out.opened.append(row)
        return row

    async def change(
        self, row: dict[str, Any], action: breaks.Change, note: str | None, **changes: Any
    ) -> None:
        """Change an open break the run holds locked, with its history line and its
        event."""
        changes["updated_at"] = self.clock.now()
        await repo.update_break(self.conn, row["id"], changes)
        row.update(changes)
        await repo.insert(
            self.conn,
            "recon_break_history",
            {
                "break_id": row["id"],
                "merchant_id": self.scope.merchant_id,
                "action": action,
                "type": row["type"],
                "run_id": self.run_id,
                "note": note,
                "at": changes["updated_at"],
            },
        )
        self.out.changed.append((action, row))

    async def settle(self, found: list[dict[str, Any]]) -> None:
        """Change the open breaks the run found it may change, each locked by the query
        that found it (a person resolving one at the same time either waits for the run
        or has resolved it first, and then it is not found): one whose item arrived, or
        whose payout came back, closes, and what it moved to suspense moves back; a timing
        break past due escalates and moves its amount; a row found to be a second copy
        becomes a duplicate."""
        for row in found:
            facts = breaks.Open(
                row["type"],
                row["due_on"],
                arrived=row.pop("arrived"),
                reversed=row.pop("reversed", False),
                duplicate=row.pop("duplicate", False),
            )
            what = breaks.change(facts, self.report_date)
            money = self.out.money(row["currency"], self.connector_account_id)
            if what in ("arrived", "reversed"):
                money.against_suspense(row, -row["suspense_amount"])
                await self.change(
                    row,
                    what,
                    f"{what} by run {self.run_id}",
                    status="resolved",
                    resolution=what,
                    closed_run_id=self.run_id,
                )
            elif what == "escalated":
                # Payrail booked it and the provider (or bank) never showed it: its side
                # comes off the provider balance (or payouts in transit), into suspense.
                moved = -row["expected_net"]
                money.against_suspense(row, moved)
                await self.change(
                    row,
                    "escalated",
                    f"not reported within {self.rules.timing_days} days",
                    type=breaks.escalated_type(row["stage"]),
                    suspense_amount=moved,
                )
            elif what == "retyped":
                await self.change(
                    row,
                    "retyped",
                    f"another row of {row['reference']} matched by run {self.run_id}",
                    type="duplicate",
                )

    def follow_up(self, found: list[dict[str, Any]]) -> None:
        """Items of breaks a person resolved that turned up after all (reported, at the
        bank, or come back): what the resolved break moved to suspense moves back, once,
        in a break of its own that names it, for whoever moved the first one on."""
        for row in found:
            back = -row["suspense_amount"]
            items = ("provider_transaction_id", "expectation_id", "payout_id", "bank_line_id")
            opened = self.open(
                row["stage"],
                "after_resolution",
                row["currency"],
                row["reference"],
                connector_account_id=row["connector_account_id"],
                follows_break_id=row["id"],
                expected_net=row["expected_net"],
                reported_net=row["arrived_net"],
                suspense_amount=back,
                **{item: row[item] for item in items if row[item] is not None},
            )
            self.out.money(row["currency"], self.connector_account_id).against_suspense(
                opened, back
            )

    async def finish(self, stage: Stage, summary: dict[str, Any]) -> dict[str, Any]:
        """Write the breaks, post the ledger, store the summary and the events."""
        await repo.copy_into(self.conn, "recon_breaks", self.out.opened)
        await repo.copy_into(
            self.conn,
            "recon_break_history",
            [
                {
                    "break_id": row["id"],
                    "merchant_id": self.scope.merchant_id,
                    "action": "opened",
                    "type": row["type"],
                    "run_id": self.run_id,
                    "at": row["created_at"],
                }
                for row in self.out.opened
            ],
        )
        batch = []
        for currency, money in sorted(self.out.movements.items()):
            posted = await postings.transaction(
                self.conn, self.scope, self.clock, self.run_id, currency, money
            )
            if posted is not None:
                batch.append(posted)
        await postings.post(self.conn, self.scope, self.clock, batch)
        by_type: dict[str, int] = defaultdict(int)
        for row in self.out.opened:
            by_type[row["type"]] += 1
        actions: dict[str, int] = defaultdict(int)
        for action, _ in self.out.changed:
            actions[action] += 1
        summary |= {
            "breaks_opened": dict(sorted(by_type.items())),
            "breaks_closed": actions["arrived"] + actions["reversed"],
            "breaks_escalated": actions["escalated"],
            "breaks_retyped": actions["retyped"],
            "fees": {c: m.fees for c, m in sorted(self.out.movements.items()) if m.fees},
            "payouts": {c: m.payouts for c, m in sorted(self.out.movements.items()) if m.payouts},
            "suspense": {
                c: m.suspense for c, m in sorted(self.out.movements.items()) if m.suspense
            },
            "ledger_transactions": [t.external_id for t in batch],
        }
        await self.conn.execute(
            "UPDATE recon_runs SET summary = %s::jsonb WHERE id = %s",
            (orjson.dumps(summary).decode(), self.run_id),
        )
        run = await _run_object(self.conn, self.scope, self.run_id)
        events = [
            OutboxEvent(
                "reconciliation.break.opened",
                "reconciliation_break",
                row["id"],
                break_object(row),
            )
            for row in self.out.opened
        ]
        events += [
            OutboxEvent(
                f"reconciliation.break.{_EVENTS[action]}",
                "reconciliation_break",
                row["id"],
                break_object(row),
            )
            for action, row in self.out.changed
        ]
        events.append(
            OutboxEvent("reconciliation.run.completed", "reconciliation_run", run["id"], run)
        )
        await emit(self.conn, self.scope, self.clock.now(), events)
        return run


# A change's event: a break closed by itself (arrived, or its payout came back), or its type
# changed by a run (escalated past its due day, re-typed a duplicate).
_EVENTS: dict[breaks.Change, str] = {
    "arrived": "closed",
    "reversed": "closed",
    "escalated": "escalated",
    "retyped": "escalated",
}


async def _run_object(conn: Conn, scope: Scope, run_id: str) -> dict[str, Any]:
    rows = await repo.runs(conn, scope, [run_id])
    return run_object(rows[0])


async def _start(
    conn: Conn,
    scope: Scope,
    clock: Clock,
    *,
    kind: Stage,
    connector_account_id: str | None,
    source: Source,
    report_date: date,
) -> tuple[str, str] | dict[str, Any]:
    """The report and run rows of a new run, or the run this file already made. A day
    already reconciled from another file is a conflict: two files of one day would
    count its money twice."""
    lock = f"recon|{scope.merchant_id}|{scope.livemode}|{connector_account_id or 'bank'}"
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (lock,))
    digest = content_hash(source.path)
    for seen in await repo.reports_by_hash(conn, scope, digest):
        if (seen["connector_account_id"], seen["report_date"]) == (
            connector_account_id,
            report_date,
        ):
            return await _run_object(conn, scope, seen["run_id"])
        if seen["row_count"] > 0:
            raise Conflict(
                f"{source.name} was reconciled before, as {seen['report_date']} of"
                f" {seen['connector_account_id'] or 'the bank'} (run {seen['run_id']});"
                " the same file for another day would count its money twice.",
                param="file",
                code="reconciliation_file_seen",
            )
    other = await repo.run_for_day(conn, scope, kind, connector_account_id, report_date)
    if other is not None:
        raise Conflict(
            f"{report_date} is already reconciled for"
            f" {connector_account_id or 'the bank'} by run {other}, from another file.",
            param="date",
            code="reconciliation_day_done",
        )
    now = clock.now()
    report_id, run_id = new_id("rpt"), new_id("rcr")
    await repo.insert(
        conn,
        "recon_reports",
        {
            "id": report_id,
            "merchant_id": scope.merchant_id,
            "livemode": scope.livemode,
            "connector_account_id": connector_account_id,
            "format": source.format,
            "file_name": source.name,
            "content_sha256": digest,
            "report_date": report_date,
            "row_count": 0,
            "created_at": now,
        },
    )
    await repo.insert(
        conn,
        "recon_runs",
        {
            "id": run_id,
            "merchant_id": scope.merchant_id,
            "livemode": scope.livemode,
            "connector_account_id": connector_account_id,
            "kind": kind,
            "report_date": report_date,
            "report_id": report_id,
            "summary": "{}",
            "started_at": now,
            "created_at": now,
        },
    )
    return report_id, run_id


def _lap(phases: dict[str, float], name: str, since: float) -> float:
    now = time.perf_counter()
    phases[name] = round(now - since, 3)
    return now


def _rows(source: Source, stream: IO[bytes]) -> Iterator[ProviderRow]:
    return PARSERS[source.format](stream, source.name)


async def reconcile_provider(
    conn: Conn,
    scope: Scope,
    clock: Clock,
    connector_account_id: str,
    source: Source,
    report_date: date,
    rules: Rules = DEFAULT_RULES,
) -> tuple[dict[str, Any], bool]:
    """Reconcile one provider report of one day, in the caller's transaction; the run,
    and whether this call made it (False: the same file had been reconciled already).
    Raises ReportError for a bad file, before anything of it is kept."""
    if source.format not in PARSERS:
        raise InvalidRequest(
            f"Unknown report format {source.format!r}; use one of {', '.join(sorted(PARSERS))}.",
            param="format",
        )
    started = await _start(
        conn,
        scope,
        clock,
        kind="provider",
        connector_account_id=connector_account_id,
        source=source,
        report_date=report_date,
    )
    if isinstance(started, dict):
        return started, False
    report_id, run_id = started
    # Wall time per phase, for the summary: where a slow day's run spent it.
    phases: dict[str, float] = {}
    mark = time.perf_counter()
    await partitions.ensure_partition(conn, report_date)
    with source.path.open("rb") as stream:
        count = await repo.copy_rows(
            conn, scope, report_id, report_date, connector_account_id, _rows(source, stream)
        )
    await conn.execute("UPDATE recon_reports SET row_count = %s WHERE id = %s", (count, report_id))
    mark = _lap(phases, "ingest", mark)
    run = _Run(conn, scope, clock, run_id, report_date, connector_account_id, rules)
    report = matching.Report(
        scope,
        run_id,
        report_id,
        connector_account_id,
        report_date,
        report_date - timedelta(days=rules.lookback_days),
        count,
    )
    matched = {"reference": await matching.match_by_reference(conn, report)}
    if rules.fallback_window is not None:
        matched["amount_window"] = await matching.match_by_amount_window(
            conn, report, rules.fallback_window
        )
    mark = _lap(phases, "match", mark)
    await run.settle(
        await repo.provider_breaks_to_change(conn, scope, connector_account_id, report_date)
    )
    await run.settle(await matching.earlier_rows_to_change(conn, report))
    run.follow_up(
        await repo.resolved_expectations_reported(conn, scope, connector_account_id, run_id)
    )
    await _classify_pairs(run)
    await _classify_unmatched(run, report)
    await _wait_for_missing(run, report)
    await _explained(run, payouts_named_on_rows=source.format == "stripe")
    _lap(phases, "classify", mark)
    by_currency: dict[str, dict[str, int]] = {}
    for currency, pairs, amount in (t for found in matched.values() for t in found):
        totals = by_currency.setdefault(currency, {"count": 0, "amount": 0})
        totals["count"] += pairs
        totals["amount"] += amount
    summary: dict[str, Any] = {
        "rows": count,
        "matched": {
            **{rule: sum(n for _, n, _ in found) for rule, found in matched.items()},
            "by_currency": dict(sorted(by_currency.items())),
        },
        "seconds": phases,
    }
    return await run.finish("provider", summary), True


async def _classify_pairs(run: _Run) -> None:
    for p in await matching.differing_pairs(run.conn, run.run_id):
        pair = breaks.Pair(
            p["expected_currency"],
            p["expected_amount"],
            p["expected_fee"],
            p["reported_currency"],
            p["reported_amount"],
            p["reported_fee"],
        )
        expected_net = p["expected_amount"] - p["expected_fee"]
        kind = breaks.pair_break(pair)
        reported = run.out.money(p["reported_currency"], run.connector_account_id)
        if kind is None:
            reported.fees += breaks.late_fee(pair)
            continue
        if kind == "currency_mismatch":
            # Two currencies: payrail's side comes off its currency's provider balance,
            # the provider's goes onto its own; both against suspense.
            run.out.money(
                p["expected_currency"], run.connector_account_id
            ).to_suspense -= expected_net
            moved = p["reported_net"]
        else:
            moved = p["reported_net"] - expected_net
        reported.to_suspense += moved
        run.open(
            "provider",
            kind,
            p["reported_currency"],
            p["reference"],
            provider_transaction_id=p["provider_transaction_id"],
            expectation_id=p["expectation_id"],
            expected_net=expected_net,
            reported_net=p["reported_net"],
            suspense_amount=moved,
        )


async def _classify_unmatched(run: _Run, report: matching.Report) -> None:
    for p in await matching.unmatched_rows(run.conn, report):
        kind = breaks.unmatched_break(
            breaks.Unmatched(p["kind"], p["duplicate_of_matched"], p["known_elsewhere"])
        )
        if kind is None:
            continue
        opened = run.open(
            "provider",
            kind,
            p["currency"],
            p["reference"],
            provider_transaction_id=p["id"],
            reported_net=p["net"],
            suspense_amount=p["net"],
        )
        run.out.money(p["currency"], run.connector_account_id).against_suspense(opened, p["net"])


async def _wait_for_missing(run: _Run, report: matching.Report) -> None:
    """Payrail's movements the provider has not reported: late until due, then missing."""
    due = breaks.due_on(run.report_date, run.rules.timing_days)
    for e in await matching.unexpected(run.conn, report):
        run.open(
            "provider",
            "timing",
            e["currency"],
            e["provider_reference"] or e["object_id"],
            expectation_id=e["id"],
            expected_net=e["amount"] - e["fee"],
            due_on=due,
        )


async def _explained(run: _Run, *, payouts_named_on_rows: bool) -> None:
    """Fees and payouts the report carries: posted, and payouts kept for the bank run; a
    payout that came back is not waited for, and the bank's break waiting for it closes.
    Stripe's itemized activity lists no payout but names it on every row it settles
    (`payouts_named_on_rows`): there a payout is the sum of the rows that name it.
    Elsewhere (Adyen's batches) a name on a row is not a payout."""
    assert run.connector_account_id is not None
    listed, named = await matching.fees_and_payouts(run.conn)
    payouts: dict[tuple[str, str], tuple[int, int]] = {}
    reversed_: list[tuple[str, str]] = []
    for r in listed:
        money = run.out.money(r["currency"], run.connector_account_id)
        if r["kind"] == "fee":
            money.fees -= int(r["net"])
        elif r["kind"] in ("payout", "payout_reversal"):
            money.payouts -= int(r["net"])
            if r["kind"] == "payout":
                payouts[(r["key"], r["currency"])] = (-int(r["net"]), int(r["rows"]))
            else:
                reversed_.append((r["key"], r["currency"]))
    listed_keys = {key for key, _ in payouts}
    for r in named if payouts_named_on_rows else []:
        if r["key"] not in listed_keys and int(r["net"]) > 0:
            run.out.money(r["currency"], run.connector_account_id).payouts += int(r["net"])
            payouts[(r["key"], r["currency"])] = (int(r["net"]), int(r["rows"]))
    now = run.clock.now()
    for (key, currency), (amount, rows) in sorted(payouts.items()):
        await repo.insert_payout(
            run.conn,
            {
                "id": new_id("rpo"),
                "merchant_id": run.scope.merchant_id,
                "livemode": run.scope.livemode,
                "connector_account_id": run.connector_account_id,
                "provider_reference": key,
                "currency": currency,
                "amount": amount,
                "transactions": rows,
                "run_id": run.run_id,
                "report_date": run.report_date,
                "created_at": now,
            },
        )
    came_back = await repo.reverse_payouts(
        run.conn, run.connector_account_id, run.run_id, reversed_
    )
    if came_back:
        await run.settle(await repo.reversed_payouts_breaks(run.conn, came_back))
        run.follow_up(await repo.resolved_payouts_settled(run.conn, run.scope, came_back))


async def reconcile_bank(
    conn: Conn,
    scope: Scope,
    clock: Clock,
    source: Source,
    report_date: date,
    rules: Rules = DEFAULT_RULES,
) -> tuple[dict[str, Any], bool]:
    """Reconcile a bank statement against the payouts the providers reported."""
    started = await _start(
        conn,
        scope,
        clock,
        kind="bank",
        connector_account_id=None,
        source=source,
        report_date=report_date,
    )
    if isinstance(started, dict):
        return started, False
    report_id, run_id = started
    with source.path.open("rb") as stream:
        count = await repo.copy_bank_lines(
            conn, scope, report_id, read_bank_statement(stream, source.name)
        )
    await conn.execute("UPDATE recon_reports SET row_count = %s WHERE id = %s", (count, report_id))
    run = _Run(conn, scope, clock, run_id, report_date, None, rules)
    matched = await repo.match_bank_lines(
        conn,
        scope,
        report_id,
        report_date - timedelta(days=rules.lookback_days),
        timedelta(days=rules.bank_window_days),
    )
    arrived = [m["payout_id"] for m in matched]
    await repo.mark_arrived(conn, run_id, arrived)
    await run.settle(
        await repo.bank_breaks_to_change(
            conn, scope, report_date, arrived, [m["id"] for m in matched]
        )
    )
    run.follow_up(await repo.resolved_payouts_settled(conn, scope, arrived))
    for m in matched:
        money = run.out.money(m["currency"], None)
        money.arrived += m["payout_amount"]
        # Found by its reference, the line may differ from the payout (a bank's fee).
        pair = breaks.Pair(m["currency"], m["payout_amount"], 0, m["currency"], m["amount"], 0)
        kind = breaks.pair_break(pair)
        if kind is not None:
            difference = m["amount"] - m["payout_amount"]
            opened = run.open(
                "bank",
                kind,
                m["currency"],
                m["reference"],
                bank_line_id=m["id"],
                expected_net=m["payout_amount"],
                reported_net=m["amount"],
                suspense_amount=difference,
            )
            money.against_suspense(opened, difference)
    for line in await repo.unmatched_bank_lines(conn, report_id):
        # Money at the bank that no payout explains: booked at the bank, into suspense.
        opened = run.open(
            "bank",
            "missing_internal",
            line["currency"],
            line["reference"] or line["description"],
            bank_line_id=line["id"],
            reported_net=line["amount"],
            suspense_amount=line["amount"],
        )
        run.out.money(line["currency"], None).against_suspense(opened, line["amount"])
    due = breaks.due_on(report_date, rules.timing_days)
    for payout in await repo.payouts_not_arrived(conn, scope, report_date):
        run.open(
            "bank",
            "timing",
            payout["currency"],
            payout["provider_reference"],
            payout_id=payout["id"],
            expected_net=payout["amount"],
            due_on=due,
        )
    summary: dict[str, Any] = {"rows": count, "matched": {"payouts": len(matched)}}
    return await run.finish("bank", summary), True
