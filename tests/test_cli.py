"""The platform as a user runs it: `payrail up` in one terminal, commands in another."""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from payrail.clock import SystemClock
from payrail.connectors.sandbox.config import DEFAULT_SECRET
from payrail.db.embedded import EmbeddedPostgres
from payrail.runtime import serve_in_thread
from tests.vaults import MASTER_KEY, fixed_vault


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environment = {
        **os.environ,
        "PAYRAIL_DATA_DIR": str(tmp_path / "data"),
        "PAYRAIL_PORT": str(_free_port()),
        "PAYRAIL_SANDBOX_PORT": str(_free_port()),
    }
    environment.pop("PAYRAIL_DATABASE_URL", None)
    return environment


def payrail(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "payrail", *args],
        env={**env, "COLUMNS": "200"},  # rich tables then keep each row on one line
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def up(env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    process = start_up(env)
    yield process
    if process.poll() is None:
        process.kill()
        process.wait()
    EmbeddedPostgres(Path(env["PAYRAIL_DATA_DIR"])).stop()


def start_up(env: dict[str, str], *options: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "payrail", "up", *options],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{env['PAYRAIL_PORT']}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        try:
            if httpx.get(f"{base}/openapi.json", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()  # and with it, through the kernel, any broker it started
    process.wait()
    raise AssertionError("payrail up did not serve the API in time")


def stop(process: subprocess.Popen[str], how: signal.Signals) -> str:
    process.send_signal(how)
    try:
        output, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    assert process.returncode in (0, -how, 128 + how, 130), output
    return output


def test_up_serves_while_a_second_terminal_creates_a_merchant(
    env: dict[str, str], up: subprocess.Popen[str]
) -> None:
    created = payrail(env, "merchants", "create", "Acme")
    assert created.returncode == 0, created.stderr
    key = re.search(r"sk_test_\S+", created.stdout)
    assert key and re.search(r"sk_live_\S+", created.stdout)
    base = f"http://127.0.0.1:{env['PAYRAIL_PORT']}"
    reply = httpx.post(
        f"{base}/v1/ledger/accounts",
        auth=(key.group(0), ""),
        data={"name": "Cash", "type": "asset", "currency": "eur"},
    )
    assert reply.status_code == 200, reply.text
    verified = payrail(env, "ledger", "verify")
    assert verified.returncode == 0 and "OK" in verified.stdout, verified.stdout
    sandbox = f"http://127.0.0.1:{env['PAYRAIL_SANDBOX_PORT']}"
    assert httpx.get(f"{sandbox}/health").json() == {"ok": True}, "up runs a sandbox PSP"
    demo = payrail(env, "demo", "--url", base)
    assert demo.returncode == 0, demo.stderr
    assert_demo_ran(demo.stdout)
    with httpx.Client(
        base_url=sandbox, headers={"Authorization": f"Bearer {DEFAULT_SECRET}"}
    ) as psp:
        made = psp.get("/sandbox/record").json()["payments"]
        # The scenario's payments come first, then the subscription business's.
        assert sorted((p["status"], p["amount_captured"]) for p in made[:3]) == [
            ("captured", 1500),
            ("captured", 2500),
            ("captured", 3000),
        ], "the demo paid through up's sandbox, each payment charged once"
        assert Counter(p["status"] for p in made[3:]) == {"captured": 50, "declined": 25}
        assert psp.post("/sandbox/faults", json={}).json()["rate"] == 0, "faults off again"


def assert_demo_ran(stdout: str) -> None:
    assert "balance_insufficient" in stdout and "replayed=True" in stdout
    assert re.search(r"pay 15\.00 USD; .*│ pi_\w+: processing after", stdout), stdout
    assert "succeeded after" in stdout and "the sandbox charged it 1 time(s)" in stdout
    for what, received, refunded in (
        ("automatic capture", "25.00", "10.00"),
        ("manual, partial capture", "30.00", "0.00"),
        ("in doubt, resolved", "15.00", "0.00"),
    ):
        row = rf"│ {re.escape(what)} +│ succeeded +│ {received} +│ {refunded} +│ 1 +│"
        assert re.search(row, stdout), f"{what}: {stdout}"
    # The subscription business: six months on a test clock, billed by up's worker.
    assert re.search(
        r"subscription business: 30 customers on test clock clock_\w+, 6 of 6 simulated months",
        stdout,
    )
    months = re.findall(
        r"^│(\d{4}-\d\d-\d\d) +│ +([\d.]+) │ +([\d.]+) │" + r" +(\d+) │" * 5 + r" +(\d+)│$",
        stdout,
        re.MULTILINE,
    )
    # clock, MRR USD, MRR EUR, paying subscriptions, new, upgraded, churned, failed, recovered
    assert months == [
        ("2026-01-01", "235.50", "85.00", "17", "24", "0", "0", "0", "0"),
        ("2026-02-01", "260.33", "137.00", "23", "2", "0", "0", "10", "0"),
        ("2026-03-01", "316.33", "130.33", "23", "1", "1", "2", "5", "1"),
        ("2026-04-01", "324.67", "151.17", "25", "1", "1", "0", "5", "1"),
        ("2026-05-01", "332.17", "119.00", "25", "1", "0", "2", "5", "0"),
        ("2026-06-01", "355.67", "119.00", "25", "1", "0", "1", "0", "1"),
        ("2026-07-01", "355.67", "119.00", "25", "0", "0", "0", "0", "0"),
    ], stdout
    assert "prorations billed for upgrades: USD 85.05" in stdout
    assert (
        "failed-payments report: 5 invoices failed, 3 recovered, 2 lost, 0 at risk;"
        " recovery rate 60.00%"
    ) in stdout
    # Today's sandbox report, with the slips the demo asks for, reconciled.
    assert "reconciliation: today's sandbox report" in stdout
    found = re.findall(r"^│ (\w+) +│ (sbx\w+) +│ (-?\d+) +│ (-?\d+) +│$", stdout, re.MULTILINE)
    assert sorted(kind for kind, *_ in found) == [
        "amount_mismatch",
        "duplicate",
        "fee_mismatch",
        "timing",
    ], stdout


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT])
def test_stop_is_clean_and_data_survives_a_restart(
    env: dict[str, str], up: subprocess.Popen[str], how: signal.Signals
) -> None:
    created = payrail(env, "merchants", "create", "Kept")
    key = re.search(r"sk_test_\S+", created.stdout)
    assert key
    output = stop(up, how)
    assert "payrail stopped" in output
    server = EmbeddedPostgres(Path(env["PAYRAIL_DATA_DIR"]))
    assert not server.is_running(), "PostgreSQL must stop with payrail up"
    restarted = start_up(env)
    try:
        base = f"http://127.0.0.1:{env['PAYRAIL_PORT']}"
        reply = httpx.get(f"{base}/v1/ledger/accounts", auth=(key.group(0), ""))
        assert reply.status_code == 200, "the merchant's key must survive the restart"
    finally:
        stop(restarted, signal.SIGTERM)
    assert not server.is_running()


def test_demo_without_up_runs_the_api_and_a_sandbox_in_process(env: dict[str, str]) -> None:
    demo = payrail(env, "demo", "--url", f"http://127.0.0.1:{env['PAYRAIL_PORT']}")
    assert demo.returncode == 0, demo.stderr
    assert "running the API in this process" in demo.stdout
    assert_demo_ran(demo.stdout)
    assert not EmbeddedPostgres(Path(env["PAYRAIL_DATA_DIR"])).is_running()
    # The events the scenario wrote, newest first: from the payment in doubt, settled
    # last, back to the merchant's creation.
    written = re.search(r"events the scenario wrote \((\d+), newest first\)", demo.stdout)
    assert written, demo.stdout
    section = demo.stdout[written.end() : demo.stdout.index("published by the relay")]
    events = re.findall(r"│ ([a-z_.]+) +│ ([a-z]+_\w+) +│ \d\d:\d\d:\d\d │", section)
    assert len(events) == int(written.group(1)) > 20, section
    assert events[-1][0] == "merchant.created" and events[-1][1].startswith("mer_")
    types = [kind for kind, _ in events]
    assert types.index("payment_intent.succeeded") < types.index("refund.created")
    assert {"ledger.transaction.posted", "webhook_endpoint.created"} <= set(types)
    # The relay published them all (the in-process relay counts nothing else).
    published = re.search(r"published by the relay: (\d+) events", demo.stdout)
    assert published and int(published.group(1)) >= len(events), demo.stdout
    # Each payment and refund event came to the demo's receiver, with a valid signature.
    hooks = re.findall(r"│ ?([a-z_.]+) +│ (evt_\w+) +│ (yes|NO) +│ (\d+) +│", demo.stdout)
    wanted = [kind for kind in types if kind.startswith(("payment_intent.", "refund."))]
    assert sorted(kind for kind, *_ in hooks) == sorted(wanted), demo.stdout
    assert {"payment_intent.succeeded", "refund.created"} <= set(wanted)
    assert len({event_id for _, event_id, *_ in hooks}) == len(hooks)
    assert all(verified == "yes" and int(attempts) >= 1 for *_, verified, attempts in hooks)
    received = f"{len(hooks)} received, {len(hooks)} with a valid Stripe-Signature"
    assert received in demo.stdout, demo.stdout
    assert not re.search(r"^(webhooks|signature rejected): ", demo.stdout, re.MULTILINE)


def test_a_command_without_up_starts_and_stops_the_embedded_database(
    env: dict[str, str],
) -> None:
    assert payrail(env, "db", "upgrade").returncode == 0
    assert payrail(env, "merchants", "create", "Solo").returncode == 0
    assert not EmbeddedPostgres(Path(env["PAYRAIL_DATA_DIR"])).is_running()


def test_verify_exits_non_zero_on_drift_and_an_external_database_is_used(
    env: dict[str, str], tmp_path: Path
) -> None:
    """PAYRAIL_DATABASE_URL selects the server; drift (only possible with the ledger's
    triggers bypassed, as a careless restore would) makes `ledger verify` exit 1."""
    external = EmbeddedPostgres(tmp_path / "external")
    url = external.start()
    try:
        env = {**env, "PAYRAIL_DATABASE_URL": url}
        created = payrail(env, "merchants", "create", "Elsewhere")
        assert created.returncode == 0, created.stderr
        assert not (Path(env["PAYRAIL_DATA_DIR"]) / "pg").exists(), "no embedded server"
        key = re.search(r"sk_test_\S+", created.stdout)
        assert key
        with serve_in_thread(url, SystemClock(), fixed_vault()) as base:
            auth = (key.group(0), "")
            cash = httpx.post(
                f"{base}/v1/ledger/accounts",
                auth=auth,
                data={"name": "Cash", "type": "asset", "currency": "usd"},
            )
            revenue = httpx.post(
                f"{base}/v1/ledger/accounts",
                auth=auth,
                data={"name": "Revenue", "type": "revenue", "currency": "usd"},
            )
            posted = httpx.post(
                f"{base}/v1/ledger/transactions",
                auth=auth,
                data={
                    "external_id": "t1",
                    "entries[0][account]": cash.json()["id"],
                    "entries[0][direction]": "debit",
                    "entries[0][amount]": "700",
                    "entries[1][account]": revenue.json()["id"],
                    "entries[1][direction]": "credit",
                    "entries[1][amount]": "700",
                },
            )
            assert posted.status_code == 200, posted.text
        clean = payrail(env, "ledger", "verify")
        assert clean.returncode == 0 and "0 drifted" in clean.stdout, clean.stdout
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET session_replication_role = replica")  # triggers off
            conn.execute(
                "UPDATE ledger_balances SET debits_posted = debits_posted + 1"
                " WHERE account_id = %s",
                (cash.json()["id"],),
            )
        drifted = payrail(env, "ledger", "verify")
        assert drifted.returncode == 1, drifted.stdout
        assert cash.json()["id"] in drifted.stdout and "1 drifted" in drifted.stdout
    finally:
        external.stop()


def test_keys_rotate_adds_a_master_version_and_rewraps_every_key(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    keys = tmp_path / "master.keys"
    keys.write_text(f"1 {base64.b64encode(MASTER_KEY).decode()}\n")
    env = {**env, "PAYRAIL_DATABASE_URL": database_url, "PAYRAIL_MASTER_KEY_FILE": str(keys)}
    env.pop("PAYRAIL_MASTER_KEY", None)
    rotated = payrail(env, "keys", "rotate", "--master")
    assert rotated.returncode == 0, rotated.stderr
    assert "master key version 2 added" in rotated.stdout
    assert "2 key(s) re-wrapped under master key version 2" in " ".join(rotated.stdout.split())
    again = payrail(env, "keys", "rotate")
    assert again.returncode == 0, again.stderr
    assert "0 key(s) re-wrapped under master key version 2" in " ".join(again.stdout.split())
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT purpose, master_version, retired_at IS NULL FROM vault_keys"
            " ORDER BY purpose, created_at"
        ).fetchall()
    assert rows == [
        ("data", 2, False),
        ("data", 2, False),
        ("data", 2, True),
        ("fingerprint", 2, True),
    ]
    refused = payrail(
        {**env, "PAYRAIL_MASTER_KEY": "1:" + base64.b64encode(MASTER_KEY).decode()},
        "keys",
        "rotate",
        "--master",
    )
    assert refused.returncode == 2
    assert "PAYRAIL_MASTER_KEY" in refused.stdout


def test_dead_letters_are_listed_and_replayed(env: dict[str, str], database_url: str) -> None:
    env = {**env, "PAYRAIL_DATABASE_URL": database_url}
    event = (
        b'{"id": "evt_dead1", "object": "event", "type": "customer.created", "version": 1,'
        b' "created": 1795000000, "livemode": false, "merchant": "mer_nobody",'
        b' "data": {"object": {"id": "cus_1", "object": "customer"}}}'
    )
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO event_dead_letters (id, consumer, event_id, topic, partition,"
            ' "offset", event, error, attempts, failed_at)'
            " VALUES ('dl_1', 'webhooks', 'evt_dead1', 'payrail.customers', 3, 7, %s,"
            " 'TimeoutError: the database was away', 5, now())",
            (event,),
        )
    listed = payrail(env, "events", "dead-letters")
    assert listed.returncode == 0, listed.stderr
    assert "evt_dead1" in listed.stdout and "the database was away" in listed.stdout
    assert "1 dead letter(s) waiting" in listed.stdout

    unknown = payrail(env, "events", "replay", "nobody")
    assert unknown.returncode == 2 and "known: webhooks" in unknown.stderr

    replayed = payrail(env, "events", "replay", "webhooks", "--id", "dl_1")
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 1; failed again 0" in replayed.stdout
    assert "0 dead letter(s) waiting" in payrail(env, "events", "dead-letters").stdout
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM event_inbox"
            " WHERE consumer = 'webhooks' AND event_id = 'evt_dead1'"
        ).fetchone()
    assert row == (1,)


def test_up_with_kafka_publishes_the_events_to_the_bundled_broker(env: dict[str, str]) -> None:
    env = {**env, "PAYRAIL_KAFKA_PORT": str(_free_port())}
    process = start_up(env, "--kafka")
    try:
        created = payrail(env, "merchants", "create", "Acme")
        key = re.search(r"sk_test_\S+", created.stdout)
        assert key, created.stdout
        base = f"http://127.0.0.1:{env['PAYRAIL_PORT']}"
        reply = httpx.post(
            f"{base}/v1/customers", auth=(key.group(0), ""), data={"email": "k@example.com"}
        )
        assert reply.status_code == 200, reply.text
        published = ""
        for _ in range(100):
            metrics = httpx.get(f"{base}/metrics").text
            found = re.search(
                r'payrail_relay_published_events_total\{transport="kafka"\} (\S+)', metrics
            )
            published = found.group(1) if found else ""
            if published and float(published) >= 3:  # two merchant.created, customer.created
                break
            time.sleep(0.1)
        assert published and float(published) >= 3, metrics
        assert "payrail_outbox_unpublished_events 0.0" in httpx.get(f"{base}/metrics").text
    finally:
        output = stop(process, signal.SIGTERM)
        EmbeddedPostgres(Path(env["PAYRAIL_DATA_DIR"])).stop()
    assert f"Kafka (bundled Tansu) on 127.0.0.1:{env['PAYRAIL_KAFKA_PORT']}" in output
    assert f"events: Kafka at 127.0.0.1:{env['PAYRAIL_KAFKA_PORT']}" in output
