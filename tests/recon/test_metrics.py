"""The gauges the alert rules read, set from the database: live mode only."""

from __future__ import annotations

from pathlib import Path

import httpx
from psycopg_pool import AsyncConnectionPool

from payrail.clock import ManualClock, unix
from payrail.ops.metrics import REGISTRY
from payrail.recon import metrics
from payrail.recon.runs import reconcile_provider
from payrail.tenants.scope import Scope
from payrail.tenants.service import NewMerchant
from tests.connectors.accounts.helpers import ACCOUNTS, send
from tests.recon.helpers import DAY, stripe_row, write_report


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_open_breaks_and_the_stalest_last_run_are_live_modes(
    pool: AsyncConnectionPool,
    client: httpx.AsyncClient,
    merchant: NewMerchant,
    clock: ManualClock,
    tmp_path: Path,
) -> None:
    live = {"Authorization": f"Bearer {merchant.live_secret}"}
    test = {"Authorization": f"Bearer {merchant.test_secret}"}

    async def stripe_account(headers: dict[str, str]) -> dict[str, str]:
        body = {"provider": "stripe", "credentials": {"secret": "sk_live_metrics_4242"}}
        reply = await send(client, headers, ACCOUNTS, body)
        assert reply.status_code == 200, reply.text
        found: dict[str, str] = reply.json()
        return found

    reconciled = await stripe_account(live)
    await stripe_account(live)
    in_test_mode = await stripe_account(test)
    async with pool.connection() as conn:
        await metrics.observe(conn)
    # Two live Stripe accounts, neither reconciled yet: the stalest never ran.
    assert sample("payrail_recon_last_success_timestamp_seconds", provider="stripe") == 0

    for scope, account, name in (
        (Scope(merchant.id, True), reconciled["id"], "live.csv"),
        (Scope(merchant.id, False), in_test_mode["id"], "test.csv"),
    ):
        rows = [stripe_row(f"txn_{name}", f"ch_{name}", "charge", 500, 45)]
        async with pool.connection() as conn, conn.transaction():
            await reconcile_provider(
                conn, scope, clock, account, write_report(tmp_path, name, rows), DAY
            )
    async with pool.connection() as conn:
        await metrics.observe(conn)
    assert sample("payrail_recon_open_breaks", stage="provider", type="missing_internal") == 1
    assert sample("payrail_recon_open_breaks", stage="provider", type="timing") == 0
    # One live account still never ran: the provider's figure stays at 0 until it does.
    assert sample("payrail_recon_last_success_timestamp_seconds", provider="stripe") == 0

    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE connector_accounts SET enabled = false WHERE id <> %s AND livemode",
            (reconciled["id"],),
        )
        await metrics.observe(conn)
    assert sample("payrail_recon_last_success_timestamp_seconds", provider="stripe") == unix(
        clock.now()
    )
