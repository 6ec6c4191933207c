"""Dunning SQL: the merchants' policies. Parameterized, scoped by merchant and mode."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from payrail.dunning.policy import Policy
from payrail.tenants.scope import Scope

Conn = AsyncConnection[Any]


async def lock_policy(conn: Conn, scope: Scope) -> None:
    """Serialize the updates of one merchant's policy, the first one included (a row lock
    cannot: there may be no row yet). Held until the transaction ends."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
        (f"dunning_policies:{scope.merchant_id}:{scope.livemode}",),
    )


async def fetch_policy(conn: Conn, scope: Scope) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT retry_days, technical_retry_hours, grace_period_days, final_action,"
            " updated_at FROM dunning_policies WHERE merchant_id = %s AND livemode = %s",
            (scope.merchant_id, scope.livemode),
        )
        return await cur.fetchone()


async def upsert_policy(conn: Conn, scope: Scope, policy: Policy, at: datetime) -> None:
    await conn.execute(
        """
        INSERT INTO dunning_policies (merchant_id, livemode, retry_days, technical_retry_hours,
                                      grace_period_days, final_action, updated_at)
        VALUES (%(merchant_id)s, %(livemode)s, %(retry_days)s, %(technical_retry_hours)s,
                %(grace_period_days)s, %(final_action)s, %(at)s)
        ON CONFLICT (merchant_id, livemode) DO UPDATE SET
            retry_days = EXCLUDED.retry_days,
            technical_retry_hours = EXCLUDED.technical_retry_hours,
            grace_period_days = EXCLUDED.grace_period_days,
            final_action = EXCLUDED.final_action,
            updated_at = EXCLUDED.updated_at
        """,
        {
            "merchant_id": scope.merchant_id,
            "livemode": scope.livemode,
            "retry_days": list(policy.retry_days),
            "technical_retry_hours": policy.technical_retry_hours,
            "grace_period_days": policy.grace_period_days,
            "final_action": policy.final_action,
            "at": at,
        },
    )


# The failed-payments report's cohort: the invoices whose first failed attempt was made in
# [since, until), each with that attempt's number and its state now. Attempt numbers grow
# with time, so "no failed attempt with a lower number" means "first". Recovered = paid;
# lost = voided, uncollectible, or its subscription canceled by dunning
# (cancellation_reason 'payment_failed', Stripe's); anything else is still open: at risk.
# Then every attempt of those invoices, whenever made; one that succeeded after the
# invoice's first failure recovered it.
_COHORT = """
WITH failed_in_window AS (
    SELECT invoice_id, min(attempt) AS attempt
    FROM invoice_payment_attempts
    WHERE merchant_id = %(merchant_id)s AND livemode = %(livemode)s
      AND attempted_at >= %(since)s AND attempted_at < %(until)s AND outcome = 'failed'
    GROUP BY invoice_id
),
cohort AS (
    SELECT f.invoice_id, f.attempt AS first_failed_attempt, i.currency, i.amount_paid,
           i.amount_remaining,
           CASE WHEN i.status = 'paid' THEN 'recovered'
                WHEN i.status IN ('void', 'uncollectible')
                  OR s.status = 'canceled' AND s.cancellation_reason = 'payment_failed'
                THEN 'lost'
                ELSE 'at_risk' END AS state
    FROM failed_in_window f
    JOIN invoices i ON i.id = f.invoice_id
        AND i.merchant_id = %(merchant_id)s AND i.livemode = %(livemode)s
    LEFT JOIN subscriptions s ON s.id = i.subscription_id
    WHERE NOT EXISTS (
        SELECT 1 FROM invoice_payment_attempts e
        WHERE e.invoice_id = f.invoice_id AND e.attempt < f.attempt AND e.outcome = 'failed')
),
attempts AS (
    SELECT a.invoice_id, a.attempt, a.amount, a.currency, a.outcome, a.decline_code,
           a.decision, a.connector_account_id, c.state,
           a.outcome = 'succeeded' AND a.attempt > c.first_failed_attempt AS recovers
    FROM cohort c JOIN invoice_payment_attempts a ON a.invoice_id = c.invoice_id
)
"""

_STATES = (
    _COHORT
    + """
SELECT state, currency, count(*) AS invoices,
       sum(CASE WHEN state = 'recovered' THEN amount_paid ELSE amount_remaining END)::bigint
           AS amount
FROM cohort GROUP BY state, currency ORDER BY state, currency
"""
)

_BY_ATTEMPT = (
    _COHORT
    + """
SELECT attempt, currency, count(*) AS attempts,
       count(*) FILTER (WHERE outcome = 'failed') AS failed,
       count(*) FILTER (WHERE outcome = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE recovers) AS recovered,
       coalesce(sum(amount) FILTER (WHERE recovers), 0)::bigint AS recovered_amount
FROM attempts GROUP BY attempt, currency ORDER BY attempt, currency
"""
)

_BY_DECLINE_CODE = (
    _COHORT
    + """
SELECT decline_code, decision, count(*) AS failed,
       count(DISTINCT invoice_id) AS invoices,
       count(DISTINCT invoice_id) FILTER (WHERE state = 'recovered') AS recovered
FROM attempts WHERE outcome = 'failed'
GROUP BY decline_code, decision
ORDER BY count(*) DESC, decline_code NULLS LAST, decision NULLS LAST
"""
)

_BY_CONNECTOR = (
    _COHORT
    + """
SELECT connector_account_id, currency, count(*) AS attempts,
       count(*) FILTER (WHERE outcome = 'failed') AS failed,
       count(*) FILTER (WHERE outcome = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE recovers) AS recovered,
       coalesce(sum(amount) FILTER (WHERE recovers), 0)::bigint AS recovered_amount
FROM attempts GROUP BY connector_account_id, currency
ORDER BY connector_account_id NULLS LAST, currency
"""
)


@dataclass(frozen=True)
class ReportRows:
    states: list[dict[str, Any]]
    by_attempt: list[dict[str, Any]]
    by_decline_code: list[dict[str, Any]]
    by_connector: list[dict[str, Any]]


async def failed_payments_rows(
    conn: Conn, scope: Scope, since: datetime, until: datetime
) -> ReportRows:
    """The report's figures, all read from one snapshot."""
    params = {
        "merchant_id": scope.merchant_id,
        "livemode": scope.livemode,
        "since": since,
        "until": until,
    }
    results: list[list[dict[str, Any]]] = []
    outermost = conn.info.transaction_status is TransactionStatus.IDLE
    async with conn.transaction():
        if outermost:  # else the caller's transaction is the snapshot
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        async with conn.cursor(row_factory=dict_row) as cur:
            for query in (_STATES, _BY_ATTEMPT, _BY_DECLINE_CODE, _BY_CONNECTOR):
                await cur.execute(query, params)
                results.append(await cur.fetchall())
    return ReportRows(*results)
