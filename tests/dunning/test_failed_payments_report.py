"""The failed-payments report (GET /v1/reports/failed_payments, `failed_payments`, and the
body of `payrail report failed-payments`), over invoices and attempts in the database.

One week of a merchant's collections, every case in it:

| invoice | currency | attempts (hours from since)                        | now                   |
|---------|----------|----------------------------------------------------|-----------------------|
| A       | USD 10   | 0 failed (insufficient_funds), 25 succeeded        | paid: recovered       |
| B       | EUR 25   | 2 failed, 26 failed (do_not_honor), 192 succeeded  | paid: recovered (late)|
| C       | USD 30   | 3 failed (expired_card, hard)                      | open: at risk         |
| D       | USD 7    | 4 failed, 28 failed (generic_decline)              | uncollectible: lost   |
| E       | USD 12   | 5 failed (insufficient_funds)                      | subscription canceled |
|         |          |                                                    | by dunning: lost      |
| F       | JPY 500  | 6 failed (connector_unreachable, technical), 7 pending | open: at risk     |
| G       | USD 9.99 | -24 failed, 24 failed                              | first failed before   |
| H       | USD 5    | 168 failed (exactly `until`)                       | after the window      |
| I       | USD 4    | 48 succeeded                                       | never failed          |
| J       | USD 8    | 10 failed; subscription canceled by the customer   | open: at risk         |
| K       | USD 6    | 11 failed, live mode                               | another mode          |
| L       | USD 3    | 12 failed, another merchant                        | another merchant      |
"""

from __future__ import annotations

import asyncio
import io
from datetime import timedelta
from typing import Any

import httpx
import pytest
import typer
from psycopg_pool import AsyncConnectionPool
from rich.console import Console

from payrail.clock import ManualClock, unix
from payrail.dunning.report import failed_payments, failed_payments_command, parse_moment
from payrail.tenants.scope import Scope
from payrail.tenants.service import NewMerchant
from tests.conftest import new_merchant
from tests.dunning.report_data import (
    T0,
    WEEK,
    Attempt,
    Invoice,
    hours,
    insert_invoice,
    new_customer,
)

Json = dict[str, Any]
REPORT = "/v1/reports/failed_payments"
SOFT, HARD, TECH = "soft_decline", "hard_decline", "technical"


def failed(at: float, code: str, decision: str = SOFT, connector: str | None = "ca_one") -> Attempt:
    return Attempt("failed", hours(at), code, decision, connector)


def paid(at: float, connector: str = "ca_one") -> Attempt:
    return Attempt("succeeded", hours(at), connector=connector)


FUNDS = "insufficient_funds"
INVOICES = {
    "A": Invoice("USD", 1000, "paid", [failed(0, FUNDS), paid(25)]),
    "B": Invoice(
        "EUR",
        2500,
        "paid",
        [
            failed(2, FUNDS, connector="ca_two"),
            failed(26, "do_not_honor", connector="ca_two"),
            paid(192, "ca_two"),
        ],
    ),
    "C": Invoice("USD", 3000, "open", [failed(3, "expired_card", HARD)]),
    "D": Invoice(
        "USD", 700, "uncollectible", [failed(4, "generic_decline"), failed(28, "generic_decline")]
    ),
    "E": Invoice(
        "USD",
        1200,
        "open",
        [failed(5, FUNDS, connector="ca_two")],
        subscription=("canceled", "payment_failed"),
    ),
    "F": Invoice(
        "JPY",
        500,
        "open",
        [failed(6, "connector_unreachable", TECH, "ca_two"), Attempt("pending", hours(7))],
    ),
    "G": Invoice("USD", 999, "open", [failed(-24, FUNDS), failed(24, FUNDS)]),
    "H": Invoice("USD", 500, "open", [failed(168, FUNDS)]),
    "I": Invoice("USD", 400, "paid", [paid(48)]),
    "J": Invoice(
        "USD",
        800,
        "open",
        [failed(10, "card_velocity_exceeded", connector="ca_two")],
        subscription=("canceled", "cancellation_requested"),
    ),
}
LIVE_INVOICE = Invoice("USD", 600, "open", [failed(11, FUNDS)])
OTHER_INVOICE = Invoice("USD", 300, "open", [failed(12, FUNDS)])


def usd(amount: int) -> Json:
    return {"amount": amount, "currency": "usd"}


EXPECTED: Json = {
    "object": "failed_payments_report",
    "livemode": False,
    "since": unix(T0),
    "until": unix(T0 + WEEK),
    "failed_invoices": 7,
    "recovered": {"invoices": 2, "amounts": [{"amount": 2500, "currency": "eur"}, usd(1000)]},
    "lost": {"invoices": 2, "amounts": [usd(1900)]},
    "at_risk": {"invoices": 3, "amounts": [{"amount": 500, "currency": "jpy"}, usd(3800)]},
    "recovery_rate": "0.2857",  # 2 / 7
    "by_attempt": [
        {
            "attempt": 1,
            "attempts": 7,
            "failed": 7,
            "succeeded": 0,
            "recovered": 0,
            "recovered_amounts": [],
            "success_rate": "0.0000",
            "recovery_rate": "0.0000",
        },
        {
            "attempt": 2,
            "attempts": 4,  # A succeeded, B and D failed, F pending
            "failed": 2,
            "succeeded": 1,
            "recovered": 1,
            "recovered_amounts": [usd(1000)],
            "success_rate": "0.3333",
            "recovery_rate": "0.1429",  # 1 / 7
        },
        {
            "attempt": 3,
            "attempts": 1,
            "failed": 0,
            "succeeded": 1,
            "recovered": 1,
            "recovered_amounts": [{"amount": 2500, "currency": "eur"}],
            "success_rate": "1.0000",
            "recovery_rate": "0.1429",
        },
    ],
    "by_decline_code": [
        {
            "decline_code": "insufficient_funds",
            "decision": SOFT,
            "failed": 3,  # A, B, E
            "invoices": 3,
            "recovered": 2,
            "recovery_rate": "0.6667",
        },
        {
            "decline_code": "generic_decline",
            "decision": SOFT,
            "failed": 2,
            "invoices": 1,
            "recovered": 0,
            "recovery_rate": "0.0000",
        },
        {
            "decline_code": "card_velocity_exceeded",
            "decision": SOFT,
            "failed": 1,
            "invoices": 1,
            "recovered": 0,
            "recovery_rate": "0.0000",
        },
        {
            "decline_code": "connector_unreachable",
            "decision": TECH,
            "failed": 1,
            "invoices": 1,
            "recovered": 0,
            "recovery_rate": "0.0000",
        },
        {
            "decline_code": "do_not_honor",
            "decision": SOFT,
            "failed": 1,
            "invoices": 1,
            "recovered": 1,
            "recovery_rate": "1.0000",
        },
        {
            "decline_code": "expired_card",
            "decision": HARD,
            "failed": 1,
            "invoices": 1,
            "recovered": 0,
            "recovery_rate": "0.0000",
        },
    ],
    "by_connector": [
        {
            "connector_account": "ca_one",  # A twice, C, D twice
            "attempts": 5,
            "failed": 4,
            "succeeded": 1,
            "recovered": 1,
            "recovered_amounts": [usd(1000)],
            "success_rate": "0.2000",
        },
        {
            "connector_account": "ca_two",  # B thrice, E, F, J
            "attempts": 6,
            "failed": 5,
            "succeeded": 1,
            "recovered": 1,
            "recovered_amounts": [{"amount": 2500, "currency": "eur"}],
            "success_rate": "0.1667",
        },
        {
            "connector_account": None,  # F's pending attempt
            "attempts": 1,
            "failed": 0,
            "succeeded": 0,
            "recovered": 0,
            "recovered_amounts": [],
            "success_rate": None,
        },
    ],
}


def empty(livemode: bool = False) -> Json:
    return {
        "object": "failed_payments_report",
        "livemode": livemode,
        "since": unix(T0),
        "until": unix(T0 + WEEK),
        "failed_invoices": 0,
        "recovered": {"invoices": 0, "amounts": []},
        "lost": {"invoices": 0, "amounts": []},
        "at_risk": {"invoices": 0, "amounts": []},
        "recovery_rate": None,
        "by_attempt": [],
        "by_decline_code": [],
        "by_connector": [],
    }


@pytest.fixture
async def week(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    merchant: NewMerchant,
    pool: AsyncConnectionPool,
    clock: ManualClock,
) -> NewMerchant:
    """The week of the module's table, and the other merchant (returned) with its one."""
    scope = Scope(merchant.id, False)
    customer = await new_customer(client, auth)
    for invoice in INVOICES.values():
        await insert_invoice(pool, scope, customer, invoice)
    live = {"Authorization": f"Bearer {merchant.live_secret}"}
    await insert_invoice(
        pool, Scope(merchant.id, True), await new_customer(client, live), LIVE_INVOICE
    )
    other = await new_merchant(pool, clock, "Other Co")
    other_auth = {"Authorization": f"Bearer {other.test_secret}"}
    await insert_invoice(
        pool, Scope(other.id, False), await new_customer(client, other_auth), OTHER_INVOICE
    )
    clock.advance(timedelta(days=10))  # B's recovery, after the window, has happened
    return other


def window(**extra: Any) -> dict[str, Any]:
    return {"since": unix(T0), "until": unix(T0 + WEEK), **extra}


async def test_the_report_over_the_api(
    client: httpx.AsyncClient, auth: dict[str, str], week: NewMerchant
) -> None:
    reply = await client.get(REPORT, headers=auth, params=window())
    assert reply.status_code == 200, reply.text
    assert reply.json() == EXPECTED


async def test_the_report_in_python_is_the_same(
    pool: AsyncConnectionPool, merchant: NewMerchant, week: NewMerchant
) -> None:
    async with pool.connection() as conn:
        report = await failed_payments(conn, Scope(merchant.id, False), T0, T0 + WEEK)
    assert report == EXPECTED
    # Inside a caller's transaction it reads that transaction's snapshot.
    async with pool.connection() as conn, conn.transaction():
        assert await failed_payments(conn, Scope(merchant.id, False), T0, T0 + WEEK) == EXPECTED


async def test_modes_and_merchants_see_only_their_own(
    client: httpx.AsyncClient, merchant: NewMerchant, week: NewMerchant
) -> None:
    live = {"Authorization": f"Bearer {merchant.live_secret}"}
    live_report = (await client.get(REPORT, headers=live, params=window())).json()
    assert live_report["failed_invoices"] == 1
    assert live_report["at_risk"] == {"invoices": 1, "amounts": [usd(600)]}
    other = {"Authorization": f"Bearer {week.test_secret}"}
    other_report = (await client.get(REPORT, headers=other, params=window())).json()
    assert other_report["failed_invoices"] == 1
    assert other_report["at_risk"] == {"invoices": 1, "amounts": [usd(300)]}
    assert other_report["by_connector"][0]["connector_account"] == "ca_one"


async def test_windows_split_invoices_by_their_first_failure(
    client: httpx.AsyncClient, auth: dict[str, str], week: NewMerchant
) -> None:
    """G (first failed the day before) and H (at `until`) fall in the neighbouring weeks;
    the three weeks together count every invoice that ever failed once."""
    before = (
        await client.get(REPORT, headers=auth, params={"since": unix(T0 - WEEK), "until": unix(T0)})
    ).json()
    after = (
        await client.get(
            REPORT, headers=auth, params={"since": unix(T0 + WEEK), "until": unix(T0 + 2 * WEEK)}
        )
    ).json()
    assert (before["failed_invoices"], before["at_risk"]["amounts"]) == (1, [usd(999)])
    assert [(row["attempt"], row["attempts"]) for row in before["by_attempt"]] == [(1, 1), (2, 1)]
    assert (after["failed_invoices"], after["at_risk"]["amounts"]) == (1, [usd(500)])
    # Until defaults to now (the clock): ten days on, the window holds this week and H.
    since_t0 = (await client.get(REPORT, headers=auth, params={"since": unix(T0)})).json()
    assert since_t0["until"] == unix(T0 + timedelta(days=10))
    assert since_t0["failed_invoices"] == EXPECTED["failed_invoices"] + 1


async def test_a_window_without_failures(
    client: httpx.AsyncClient, auth: dict[str, str], merchant: NewMerchant
) -> None:
    reply = await client.get(REPORT, headers=auth, params=window())
    assert reply.json() == empty()


@pytest.mark.parametrize(
    ("params", "param", "code"),
    [
        ({}, "since", "parameter_missing"),
        ({"since": "yesterday"}, "since", "parameter_invalid"),
        ({"since": "1.5"}, "since", "parameter_invalid"),
        ({"since": "-5"}, "since", "parameter_invalid"),
        ({"since": str(10**12)}, "since", "parameter_invalid"),
        # With no until, since must be before now (the clock: T0).
        ({"since": str(unix(T0))}, "since", "parameter_invalid"),
        ({"since": "100", "until": "100"}, "until", "parameter_invalid"),
        ({"since": "100", "until": "50"}, "until", "parameter_invalid"),
        ({"since": "100", "until": "soon"}, "until", "parameter_invalid"),
        ({"since": "100", "currency": "usd"}, "currency", "parameter_unknown"),
    ],
)
async def test_bad_windows_are_400s_naming_the_parameter(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    params: dict[str, str],
    param: str,
    code: str,
) -> None:
    reply = await client.get(REPORT, headers=auth, params=params)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)


async def test_the_report_needs_a_key(client: httpx.AsyncClient) -> None:
    assert (await client.get(REPORT, params=window())).status_code == 401


# --- The CLI command's body ---------------------------------------------------------------------


def cells(output: str) -> list[list[str]]:
    """The rows of every table printed, as lists of cell texts."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in output.splitlines()
        if line.strip().startswith("│")
    ]


async def run_command(database_url: str, **options: Any) -> tuple[Json, str]:
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    report = await asyncio.to_thread(
        failed_payments_command,
        database_url,
        console=console,
        **{"until": None, "livemode": False, "now": T0 + WEEK, **options},
    )
    return report, out.getvalue()


async def test_the_command_prints_the_report(
    database_url: str, merchant: NewMerchant, week: NewMerchant
) -> None:
    report, output = await run_command(database_url, merchant=merchant.id, since="7d")
    assert report == EXPECTED
    rows = cells(output)
    assert rows[:4] == [
        ["failed", "7", ""],
        ["recovered", "2", "EUR 25.00, USD 10.00"],
        ["lost", "2", "USD 19.00"],
        ["at risk", "3", "JPY 500, USD 38.00"],
    ]
    assert rows[4:7] == [
        ["1", "7", "7", "0", "0", "-", "0.00%", "0.00%"],
        ["2", "4", "2", "1", "1", "USD 10.00", "33.33%", "14.29%"],
        ["3", "1", "0", "1", "1", "EUR 25.00", "100.00%", "14.29%"],
    ]
    assert rows[7] == ["insufficient_funds", SOFT, "3", "3", "2", "66.67%"]
    assert rows[-1] == ["-", "1", "0", "0", "0", "-", "-"]
    assert "by attempt (1 = first try)" in output
    assert output.rstrip().endswith("7 invoice(s) failed; recovery rate 28.57%")
    # The same window as dates, in live mode: its one invoice.
    live, _ = await run_command(
        database_url, merchant=merchant.id, since="2026-01-01", until="2026-01-08", livemode=True
    )
    assert (live["livemode"], live["failed_invoices"]) == (True, 1)


async def test_the_command_refuses_bad_options(database_url: str, merchant: NewMerchant) -> None:
    for options, hint in [
        ({"merchant": merchant.id, "since": "last week"}, "--since"),
        ({"merchant": merchant.id, "since": "7d", "until": "tomorrow"}, "--until"),
        ({"merchant": merchant.id, "since": "2026-02-01"}, "--since"),  # after now
        ({"merchant": "mer_nobody", "since": "7d"}, "--merchant"),
    ]:
        with pytest.raises(typer.BadParameter) as raised:
            await run_command(database_url, **options)
        assert raised.value.param_hint == hint


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("7d", T0 + WEEK - timedelta(days=7)),
        ("12h", T0 + WEEK - timedelta(hours=12)),
        ("2w", T0 + WEEK - timedelta(weeks=2)),
        ("2026-01-03", T0 + timedelta(days=2)),
        ("2026-01-03T10:30:00", T0 + timedelta(days=2, hours=10, minutes=30)),
        ("2026-01-03T10:30:00+02:00", T0 + timedelta(days=2, hours=8, minutes=30)),
    ],
)
def test_since_is_a_date_or_a_span_back_from_now(text: str, moment: Any) -> None:
    assert parse_moment(text, T0 + WEEK, "--since") == moment


@pytest.mark.parametrize("text", ["", "7", "d", "0d", "7y", "-7d", "99999d", "01/03/2026"])
def test_other_moments_are_refused(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_moment(text, T0 + WEEK, "--since")
