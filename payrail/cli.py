"""The `payrail` command."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Annotated, Any

import psycopg
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from payrail.clock import SystemClock
from payrail.config import Settings
from payrail.db.migrate import upgrade
from payrail.db.pool import open_pool
from payrail.events.consumers import Consumer, Replay, replay
from payrail.ledger.verify import VerifyReport, verify
from payrail.ops.logging import configure as configure_logging
from payrail.runtime import database
from payrail.runtime import up as run_up
from payrail.runtime import worker as run_worker
from payrail.tenants.service import NewMerchant, create_merchant
from payrail.vault.envelope import Rotation, Vault
from payrail.vault.keyring import Keyring, MasterKeyError

app = typer.Typer(help="payrail: payments and subscriptions on PostgreSQL.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
merchants_app = typer.Typer(help="Merchants and API keys.", no_args_is_help=True)
ledger_app = typer.Typer(help="The double-entry ledger.", no_args_is_help=True)
keys_app = typer.Typer(help="The card vault's keys.", no_args_is_help=True)
worker_app = typer.Typer(help="Background workers, one role per process.", no_args_is_help=True)
events_app = typer.Typer(help="Events: dead letters and their replay.", no_args_is_help=True)
billing_app = typer.Typer(help="Subscription billing.", no_args_is_help=True)
report_app = typer.Typer(help="Reports.", no_args_is_help=True)
recon_app = typer.Typer(
    help="Reconciliation of providers' settlement reports and bank statements.",
    no_args_is_help=True,
)
bench_app = typer.Typer(
    help="Benchmarks that print figures beside a reference.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(merchants_app, name="merchants")
app.add_typer(ledger_app, name="ledger")
app.add_typer(keys_app, name="keys")
app.add_typer(worker_app, name="worker")
app.add_typer(bench_app, name="bench")
app.add_typer(events_app, name="events")
app.add_typer(billing_app, name="billing")
app.add_typer(report_app, name="report")
app.add_typer(recon_app, name="recon")
console = Console()


@app.callback()
def main() -> None:
    configure_logging()


@app.command()
def up(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="API port.")] = None,
    kafka: Annotated[
        bool,
        typer.Option(
            "--kafka",
            help="Run the bundled Kafka broker (port PAYRAIL_KAFKA_PORT, 9092) and publish "
            "the events to it.",
        ),
    ] = False,
) -> None:
    """Run the platform in one process: database (embedded unless configured), API,
    workers, sandbox PSP."""
    settings = Settings.from_env()
    settings = dataclasses.replace(settings, host=host or settings.host, port=port or settings.port)
    if kafka and settings.kafka_bootstrap_servers:
        raise typer.BadParameter(
            "PAYRAIL_KAFKA_BOOTSTRAP_SERVERS names a Kafka already; --kafka starts another",
            param_hint="--kafka",
        )
    run_up(settings, kafka=kafka)


@worker_app.command("janitor")
def worker_janitor() -> None:
    """Settle payments whose provider answer was lost (in doubt), by asking the provider."""
    run_worker(Settings.from_env(), "janitor")


@worker_app.command("webhooks")
def worker_webhooks() -> None:
    """Turn events into merchant webhook deliveries, and send them."""
    run_worker(Settings.from_env(), "webhooks")


@worker_app.command("relay")
def worker_relay() -> None:
    """Publish the outbox to Kafka (or the PostgreSQL log), in order per aggregate."""
    run_worker(Settings.from_env(), "relay")


@worker_app.command("billing")
def worker_billing() -> None:
    """Renew subscriptions, collect invoices, run dunning, recognise revenue."""
    run_worker(Settings.from_env(), "billing")


@worker_app.command("recon")
def worker_recon() -> None:
    """Fetch and reconcile every connector account's settlement report, daily."""
    run_worker(Settings.from_env(), "recon")


@billing_app.command("run")
def billing_run(
    until: Annotated[
        str,
        typer.Option(
            help="Bill everything due up to this time: ISO 8601 (UTC unless given), or now."
        ),
    ] = "now",
) -> None:
    """Bill every subscription due by --until (a batch run or a backfill), then exit."""
    from payrail.billing.commands import parse_until, run_billing

    settings = Settings.from_env()
    try:
        moment = parse_until(until, SystemClock().now())
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--until") from None
    with database(settings) as url:
        upgrade(url)
        asyncio.run(run_billing(url, settings, moment, console))


@report_app.command("failed-payments")
def report_failed_payments(
    merchant: Annotated[str, typer.Option(help="The merchant (mer_...).")],
    since: Annotated[
        str,
        typer.Option(
            help="Window start: 12h, 7d, 2w, or an ISO date / date and time (UTC unless offset)."
        ),
    ],
    until: Annotated[
        str | None, typer.Option(help="Window end (excluded), same forms; default now.")
    ] = None,
    live: Annotated[bool, typer.Option("--live", help="Live mode instead of test mode.")] = False,
) -> None:
    """Failed invoice payments first failing in the window: recovered, lost, at risk; by
    attempt, decline code and connector."""
    from payrail.dunning.report import failed_payments_command

    with database(Settings.from_env()) as url:
        failed_payments_command(
            url,
            merchant=merchant,
            since=since,
            until=until,
            livemode=live,
            now=SystemClock().now(),
            console=console,
        )


def _reconcile(
    provider: str,
    file: Path,
    day: str | None,
    connector: str | None,
    merchant: str | None,
    live: bool,
    html: Path | None,
    csv: Path | None,
) -> None:
    from payrail.recon.commands import (
        CommandError,
        report_day,
        run_breaks,
        run_file,
        show,
        write_reports,
    )

    clock = SystemClock()
    try:
        report_date = report_day(day, clock)
        with database(Settings.from_env()) as url:
            upgrade(url)
            run, made, seconds = asyncio.run(
                run_file(
                    url,
                    clock,
                    provider=provider,
                    path=file,
                    report_date=report_date,
                    connector=connector,
                    merchant=merchant,
                    livemode=live,
                )
            )
            if html is not None or csv is not None:
                write_reports(run, asyncio.run(run_breaks(url, run)), html, csv)
    except CommandError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None
    show(console, run, made, seconds)


@recon_app.command("run")
def recon_run(
    provider: Annotated[str, typer.Option(help="The report's format: stripe, paypal or adyen.")],
    file: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="The report file.")],
    date: Annotated[
        str | None, typer.Option(help="The day it reports (YYYY-MM-DD); default yesterday.")
    ] = None,
    connector: Annotated[
        str | None,
        typer.Option(help="The connector account (ca_...); needed when there are several."),
    ] = None,
    html: Annotated[
        Path | None, typer.Option(help="Also write the run's report as HTML to this file.")
    ] = None,
    csv: Annotated[
        Path | None, typer.Option(help="Also write the run's breaks as CSV to this file.")
    ] = None,
) -> None:
    """Reconcile a provider's settlement report of one day against payrail's ledger."""
    _reconcile(provider, file, date, connector, None, False, html, csv)


@recon_app.command("bank")
def recon_bank(
    file: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="The statement CSV.")],
    merchant: Annotated[str, typer.Option(help="The merchant (mer_...) whose bank it is.")],
    date: Annotated[
        str | None, typer.Option(help="The statement's day (YYYY-MM-DD); default yesterday.")
    ] = None,
    live: Annotated[bool, typer.Option("--live", help="Live mode instead of test mode.")] = False,
    html: Annotated[
        Path | None, typer.Option(help="Also write the run's report as HTML to this file.")
    ] = None,
    csv: Annotated[
        Path | None, typer.Option(help="Also write the run's breaks as CSV to this file.")
    ] = None,
) -> None:
    """Reconcile a bank statement against the payouts the providers reported."""
    _reconcile("bank", file, date, None, merchant, live, html, csv)


@bench_app.command("billing")
def bench_billing(
    subscriptions: Annotated[
        int, typer.Option(min=1, help="Active monthly subscriptions, all due at once.")
    ] = 10_000,
    workers: Annotated[
        str, typer.Option(help="Billing worker processes per round, comma-separated.")
    ] = "1,2,4",
    database_url: Annotated[
        str | None,
        typer.Option(help="An empty database to run on, instead of a throwaway embedded one."),
    ] = None,
    sample: Annotated[
        int, typer.Option(min=1, help="Renewals timed step by step in one worker.")
    ] = 2_000,
    batch: Annotated[int, typer.Option(min=1, help="Subscriptions a worker claims at once.")] = 100,
    pgbench_seconds: Annotated[int, typer.Option(min=1, help="Seconds of pgbench.")] = 10,
    profile: Annotated[
        Path | None,
        typer.Option(help="Also profile the sample in one worker; cProfile stats to this file."),
    ] = None,
) -> None:
    """Subscription renewals/s end to end (invoice, payment, ledger, events) by number of
    billing workers, beside pgbench TPC-B tps."""
    from payrail.bench.billing import parse_workers, run

    try:
        counts = parse_workers(workers)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--workers") from None
    with console.status("benchmarking billing (a throwaway PostgreSQL, pgbench, ours)") as status:
        rows = run(
            subscriptions=subscriptions,
            workers=counts,
            database_url=database_url,
            sample=sample,
            batch=batch,
            pgbench_seconds=pgbench_seconds,
            profile=profile,
            progress=lambda text: status.update(f"benchmarking billing: {text}"),
        )
    table = Table("measure", "figure", "target / reference", title="payrail bench billing")
    for row in rows:
        table.add_row(*row)
    console.print(table)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    with database(Settings.from_env()) as url:
        upgrade(url)
    console.print("database schema is up to date")


async def _create_merchant(url: str, name: str) -> NewMerchant:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    async with conn:
        return await create_merchant(conn, SystemClock(), name)


@merchants_app.command("create")
def merchants_create(name: str) -> None:
    """Create a merchant and print its API keys (shown once; only their hashes are kept)."""
    with database(Settings.from_env()) as url:
        upgrade(url)
        merchant = asyncio.run(_create_merchant(url, name))
    console.print(f"merchant {merchant.id} ({merchant.name})")
    console.print(f"test secret key: {merchant.test_secret}")
    console.print(f"live secret key: {merchant.live_secret}")
    console.print("Store these keys now: payrail keeps only their hashes.")


async def _verify(url: str) -> VerifyReport:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    async with conn:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("verifying balances", total=None)

            def advance(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            async with conn.transaction():
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                return await verify(conn, advance)


@ledger_app.command("verify")
def ledger_verify() -> None:
    """Recompute every balance from its entries; exit 1 on any drift."""
    with database(Settings.from_env()) as url:
        report = asyncio.run(_verify(url))
    table = Table(title="balance drift (debits/credits pending, debits/credits posted)")
    table.add_column("account", no_wrap=True)
    table.add_column("stored")
    table.add_column("from entries")
    for account_id, stored, computed in report.drifted:
        table.add_row(account_id, str(stored), str(computed))
    if report.drifted:
        console.print(table)
    for transaction_id, problem in report.broken:
        console.print(f"transaction {transaction_id}: {problem}")
    verdict = "OK" if report.ok else "DRIFT"
    console.print(
        f"ledger verify: {report.accounts} accounts, {len(report.drifted)} drifted, "
        f"{len(report.broken)} broken transactions: {verdict}"
    )
    raise typer.Exit(0 if report.ok else 1)


async def _rotate(url: str, vault: Vault) -> Rotation:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    async with conn, conn.transaction():
        return await vault.rotate(conn, SystemClock().now())


@keys_app.command("rotate")
def keys_rotate(
    master: Annotated[
        bool, typer.Option("--master", help="First add a new master key version to the key file.")
    ] = False,
) -> None:
    """Start a new data key for new cards and re-wrap every key under the newest master
    key. Safe while payrail runs: cards sealed under older keys still open."""
    settings = Settings.from_env()
    keyring = Keyring.from_env(settings.data_dir)
    if master:
        try:
            console.print(f"master key version {keyring.add_version()} added")
        except MasterKeyError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None
    with database(settings) as url:
        upgrade(url)
        rotation = asyncio.run(_rotate(url, Vault(keyring)))
    console.print(
        f"new data key {rotation.data_key_id}; {rotation.rewrapped} key(s) re-wrapped under"
        f" master key version {rotation.master_version}"
    )


async def _dead_letters(url: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            "SELECT id, consumer, event_id, attempts, failed_at, error FROM event_dead_letters"
            " WHERE replayed_at IS NULL ORDER BY failed_at, id LIMIT 1000"
        )
        return list(await cur.fetchall())


@events_app.command("dead-letters")
def events_dead_letters() -> None:
    """List the events consumers gave up on, oldest first, with their errors."""
    with database(Settings.from_env()) as url:
        rows = asyncio.run(_dead_letters(url))
    table = Table("id", "consumer", "event", "attempts", "failed at", "error")
    for dead_letter_id, consumer, event_id, attempts, failed_at, error in rows:
        table.add_row(
            dead_letter_id,
            consumer,
            event_id,
            str(attempts),
            f"{failed_at:%Y-%m-%d %H:%M:%S}",
            error,
        )
    console.print(table)
    console.print(
        f"{len(rows)} dead letter(s) waiting" + (" (first 1,000)" if len(rows) == 1000 else "")
    )


async def _replay(url: str, consumer: Consumer, ids: list[str] | None) -> Replay:
    pool = await open_pool(url, min_size=1, max_size=2)
    try:
        return await replay(pool, consumer, SystemClock(), ids)
    finally:
        await pool.close()


@events_app.command("replay")
def events_replay(
    consumer: Annotated[str, typer.Argument(help="The consumer whose dead letters to run.")],
    dead_letter: Annotated[
        list[str] | None, typer.Option("--id", help="Only this dead letter (repeatable).")
    ] = None,
) -> None:
    """Run a consumer's dead letters again; those that succeed are marked replayed."""
    from payrail.events.registry import CONSUMERS

    if consumer not in CONSUMERS:
        known = ", ".join(sorted(CONSUMERS))
        raise typer.BadParameter(f"no consumer {consumer!r}; known: {known}", param_hint="CONSUMER")
    with database(Settings.from_env()) as url:
        report = asyncio.run(_replay(url, CONSUMERS[consumer], dead_letter))
    console.print(f"replayed {report.replayed}; failed again {report.failed}")
    if report.failed:
        raise typer.Exit(1)


@bench_app.command("ledger")
def bench_ledger(
    seconds: Annotated[float, typer.Option(help="Seconds per measurement.")] = 15,
    workers: Annotated[int, typer.Option(help="Concurrent connections.")] = 8,
) -> None:
    """Ledger transfers/s (single, batched, hot account) beside pgbench TPC-B tps."""
    from payrail.bench.ledger import run

    with console.status("benchmarking the ledger (a throwaway PostgreSQL, pgbench, ours)"):
        rows = run(seconds=seconds, workers=workers)
    table = Table("measure", "figure", "target / reference", title="payrail bench ledger")
    for row in rows:
        table.add_row(*row)
    console.print(table)


@bench_app.command("payments")
def bench_payments(
    seconds: Annotated[float, typer.Option(help="Seconds of measured load.")] = 15,
    clients: Annotated[int, typer.Option(help="Concurrent clients, one payment at a time.")] = 16,
    api_workers: Annotated[int, typer.Option(help="API worker processes.")] = 1,
    warmup: Annotated[float, typer.Option(help="Seconds of unmeasured load first.")] = 3,
    idempotency_keys: Annotated[
        bool, typer.Option(help="Send an Idempotency-Key with every payment.")
    ] = True,
) -> None:
    """Confirmed payments/s over HTTP, p50 and p99 latency, beside pgbench TPC-B tps."""
    from payrail.bench.payments import run

    with console.status("benchmarking payments (a throwaway PostgreSQL, pgbench, the API)"):
        rows = run(
            seconds=seconds,
            clients=clients,
            api_workers=api_workers,
            warmup=warmup,
            keys=idempotency_keys,
        )
    table = Table("measure", "figure", "target / reference", title="payrail bench payments")
    for row in rows:
        table.add_row(*row)
    console.print(table)


@bench_app.command("events")
def bench_events(
    events: Annotated[int, typer.Option(help="Events in the outbox the relay drains.")] = 200_000,
    replicas: Annotated[int, typer.Option(help="Relay replicas draining it.")] = 1,
    rate: Annotated[int, typer.Option(help="Events/s for the latency run.")] = 1000,
    seconds: Annotated[float, typer.Option(help="Seconds of the latency run.")] = 10,
) -> None:
    """Relay events/s (outbox to transport) and commit-to-consumer latency at a fixed rate."""
    from payrail.bench.events import run

    with console.status("benchmarking events (a throwaway PostgreSQL, the relay, a consumer)"):
        rows = run(events=events, replicas=replicas, rate=rate, seconds=seconds)
    table = Table("measure", "figure", "target / reference", title="payrail bench events")
    for row in rows:
        table.add_row(*row)
    console.print(table)


@bench_app.command("recon")
def bench_recon(
    rows: Annotated[
        int, typer.Option(min=1, help="Expectations, and rows of the provider's report.")
    ] = 1_000_000,
    sizes: Annotated[
        str | None,
        typer.Option(help="Several report sizes, comma-separated (1000000,2000000); not --rows."),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database",
            help="A database URL to run on (its server's settings), instead of a throwaway"
            " embedded PostgreSQL per size.",
        ),
    ] = None,
) -> None:
    """One day's Stripe report reconciled (parse, match, breaks, ledger) in one
    transaction, checked against the discrepancies injected, beside plain pandas."""
    from payrail.bench.recon import parse_sizes, run

    try:
        counts = parse_sizes(sizes) if sizes is not None else (rows,)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--sizes") from None
    with console.status("benchmarking reconciliation (a throwaway PostgreSQL, pandas)") as status:
        table_rows, reconciled_right = run(
            sizes=counts,
            database_url=database_url,
            progress=lambda text: status.update(f"benchmarking reconciliation: {text}"),
        )
    table = Table("measure", "figure", "target / reference", title="payrail bench recon")
    for row in table_rows:
        table.add_row(*row)
    console.print(table)
    if not reconciled_right:
        console.print("[red]FAIL[/red]: a run did not reconcile what was injected (see checks)")
        raise typer.Exit(1)


@app.command("sandbox-psp")
def sandbox_psp(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8100,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    seed: Annotated[int, typer.Option(help="Seed of the fault draws.")] = 0,
    fault_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of POSTs that get a fault.")
    ] = 0.0,
    hang_seconds: Annotated[
        float, typer.Option(min=0.0, help="How long timeout faults hang.")
    ] = 30.0,
    secret: Annotated[str, typer.Option(help="The Bearer secret clients must send.")] = (
        "sbx_sk_sandbox"
    ),
    webhook_url: Annotated[
        str | None, typer.Option(help="Where to POST an event on every state change.")
    ] = None,
    webhook_secret: Annotated[
        str, typer.Option(help="Signs the events (Sandbox-Signature header).")
    ] = "whsec_sandbox",
    webhook_duplicate_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of events delivered twice.")
    ] = 0.0,
    webhook_delay_ms: Annotated[
        int,
        typer.Option(
            min=0, max=600_000, help="Most extra delay per delivery, so events arrive out of order."
        ),
    ] = 0,
) -> None:
    """Run the sandbox PSP, a fake card processor with injectable faults, until Ctrl-C."""
    # Imported here so that `payrail` starts fast for every other command.
    from payrail.connectors.sandbox import SandboxConfig
    from payrail.connectors.sandbox.server import run

    try:
        config = SandboxConfig(
            secret=secret,
            seed=seed,
            fault_rate=fault_rate,
            hang_seconds=hang_seconds,
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
            webhook_duplicate_rate=webhook_duplicate_rate,
            webhook_delay_ms=webhook_delay_ms,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    # Not the URL itself: it may carry a token, and this line ends up in logs.
    webhooks = "webhooks on" if webhook_url else "no webhooks"

    def ready(url: str) -> None:
        console.print(
            f"sandbox PSP listening on {url} (seed {seed}, fault rate {fault_rate}, "
            f"hang {hang_seconds}s, {webhooks})",
            soft_wrap=True,  # a wrapped URL is no use to whoever copies it
        )

    run(config, host, port, ready)
    console.print("sandbox PSP stopped")


@app.command()
def demo(
    url: Annotated[str, typer.Option(help="Where `payrail up` serves the API.")] = (
        "http://127.0.0.1:8000"
    ),
) -> None:
    """Run a short scripted scenario against payrail and print what happened."""
    from payrail.demo import run

    run(Settings.from_env(), url)
