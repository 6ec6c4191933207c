"""`payrail bench billing` renews through the real engine in worker processes; a tiny run
must renew each subscription once a round, pay each through the sandbox, time the steps it
names and leave the ledger consistent."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from payrail.bench.billing import Checks, measure, parse_workers, rows
from tests.vaults import MASTER_KEY


def postmaster_of(database_url: str) -> int:
    """The server's postmaster: the parent of a backend of this machine's server."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    stat = Path(f"/proc/{row[0]}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def test_each_round_renews_every_subscription_once_and_pays_it(database_url: str) -> None:
    outcome = measure(
        database_url,
        MASTER_KEY,
        subscriptions=20,
        workers=(1, 2),
        sample=4,
        batch=4,
        postmaster=postmaster_of(database_url),
    )
    assert [r.workers for r in outcome.rounds] == [1, 2]
    for r in [*outcome.rounds, outcome.sample]:
        due = r.checks.due
        assert r.renewed == due
        assert r.checks == Checks(due, due, 0, due, due, r.checks.events)
        assert r.checks.ok
        # The same outbox events for every renewal (invoice, payment, ledger, subscription).
        assert r.checks.events % due == 0 and r.checks.events >= 6 * due
        assert r.usage.transactions >= 6 * due
        assert r.usage.worker_cpu >= 0
        assert r.usage.postgres_cpu is not None
    assert [r.checks.due for r in outcome.rounds] == [20, 20]
    assert outcome.sample.checks.due == 4
    s = outcome.sample.spans
    # Timings are the bench's business, not the test's (the machine is shared and noisy):
    # only that each span was measured, and that nested spans nest.
    assert all(seconds >= 0 for seconds in s.values())
    assert s["step"] >= s["finalize"] >= s["number"] and s["collect"] >= s["payment"] >= s["psp"]
    # Counted per call: a step, a payment and its ledger postings for each renewal.
    assert (s["step_calls"], s["payment_calls"], s["psp_calls"]) == (8, 4, 4)
    assert s["ledger_calls"] >= 3 * 4 and s["sql_calls"] > 20 * 4
    assert outcome.rounds[0].spans == {}
    # The first invoice, two rounds of 20, the sample of 4: each charged once.
    assert (outcome.captured, outcome.succeeded, outcome.charged_twice) == (45, 45, 0)
    assert outcome.ledger_ok

    table = rows(outcome, tps=1000.0, clients=2, profile=None)
    labels = [label for label, _, _ in table]
    assert labels[:4] == [
        "machine",
        "pgbench TPC-B (reference)",
        "subscriptions due each round",
        "renewals, 1 worker",
    ]
    assert "renewals, 2 workers" in labels
    assert table[1][1] == "1,000 tps"
    assert not any("FAILED" in reference for _, _, reference in table)
    assert table[-1] == ("ledger verify after the run", "OK", "")
    assert table[-2][1:] == ("45 / 45", "0 charged twice")


def test_worker_counts_are_read_from_a_comma_separated_list() -> None:
    assert parse_workers("1,2,4") == (1, 2, 4)
    assert parse_workers(" 8 ") == (8,)
    with pytest.raises(ValueError, match=r"^--workers: 'two' is not a worker count \(1 or more\)$"):
        parse_workers("1,two")
    for bad in ("1,,2", "0", "-1", ""):
        with pytest.raises(ValueError, match=r"^--workers: "):
            parse_workers(bad)
