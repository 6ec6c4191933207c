"""Connector accounts and routing rules. Each write runs inside the caller's transaction
and writes its outbox event there.

An account's credentials are sealed by the vault, bound to the account and merchant, the
moment they arrive; afterwards only `Connectors.get` opens them, to build the connector
for a payment. No object, event, log line or error carries them: only their last 4.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from payrail.api.schemas import merge_metadata
from payrail.clock import Clock, unix
from payrail.connectors import routing
from payrail.connectors.accounts import repository as repo
from payrail.connectors.accounts.schemas import (
    ConnectorAccountCreate,
    ConnectorAccountUpdate,
    Credentials,
    RoutingRuleCreate,
)
from payrail.connectors.base import Connector
from payrail.connectors.sandbox_connector import DEFAULT_WEBHOOK_SECRET, SandboxConnector
from payrail.errors import InvalidRequest, NotFound, ResourceMissing
from payrail.events.outbox import OutboxEvent, emit
from payrail.ids import new_id
from payrail.tenants.scope import Scope
from payrail.vault.envelope import Vault

Conn = repo.Conn


class ConnectorNotImplemented(InvalidRequest):
    """The account's provider has no connector in this version of payrail yet."""

    def __init__(self, account_id: str, provider: str) -> None:
        super().__init__(
            f"Connector account {account_id} uses provider '{provider}', whose connector is"
            " not implemented yet: only 'sandbox' accounts can take payments for now.",
            param="connector_account",
            code="connector_not_implemented",
        )


def credentials_context(
    account_id: str, merchant_id: str, provider: str, base_url: str | None
) -> str:
    """What sealed credentials are bound to: their account, merchant, provider and the
    URL they are sent to. Copied onto another row they do not open, and pointing an
    account at another URL means sending the credentials again."""
    return f"{account_id}|{merchant_id}|credentials|{provider}|{base_url or ''}"


def _sealable(credentials: Credentials) -> str:
    """The text sealed: the API secret, then the webhook secret (if any) on a second line.
    Neither can hold a line break (schemas.Secret), so credentials sealed before webhook
    secrets existed open as they did."""
    if credentials.webhook_secret is None:
        return credentials.secret
    return f"{credentials.secret}\n{credentials.webhook_secret}"


def connector_account_object(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "connector_account",
        "provider": row["provider"],
        "name": row["name"],
        "base_url": row["base_url"],
        "currencies": [c.lower() for c in row["currencies"]],
        "enabled": row["enabled"],
        "credentials_last4": row["credentials_last4"],
        "metadata": row["metadata"],
        "created": unix(row["created_at"]),
        "updated": unix(row["updated_at"]),
        "livemode": row["livemode"],
    }


def routing_rule_object(row: dict[str, Any]) -> dict[str, Any]:
    conditions = row["conditions"]
    return {
        "id": row["id"],
        "object": "routing_rule",
        "priority": row["priority"],
        "conditions": {
            "currencies": [c.lower() for c in conditions["currencies"]],
            "countries": conditions["countries"],
            "payment_methods": conditions["payment_methods"],
            "min_amount": conditions["min_amount"],
            "max_amount": conditions["max_amount"],
        },
        "connector_accounts": list(row["connector_accounts"]),
        "created": unix(row["created_at"]),
        "livemode": row["livemode"],
    }


def _check_transport(scope: Scope, base_url: str | None) -> None:
    if base_url is None:
        return
    host = urlsplit(base_url).hostname or ""
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    # Credentials go to base_url with every call: never to a cloud metadata service, and
    # in live mode never to this machine's or a private network's addresses.
    if address is not None and (
        address.is_link_local or (scope.livemode and (address.is_private or address.is_loopback))
    ):
        raise InvalidRequest(
            "Invalid base_url: its address is not one a payment provider can have.",
            param="base_url",
            code="parameter_invalid",
        )
    # Live credentials travel to base_url with every call: never in clear text.
    if scope.livemode and not base_url.startswith("https://"):
        raise InvalidRequest(
            "Invalid base_url: in live mode it must be an https URL, as the credentials are"
            " sent to it.",
            param="base_url",
            code="parameter_invalid",
        )


async def create_connector_account(
    conn: Conn, scope: Scope, clock: Clock, vault: Vault, params: ConnectorAccountCreate
) -> dict[str, Any]:
    if scope.livemode and params.provider == "sandbox":
        # A live card must never reach a stand-in processor (also a CHECK, migration 0008).
        raise InvalidRequest(
            "The sandbox provider takes test-mode payments only; use a test key.",
            param="provider",
            code="parameter_invalid",
        )
    _check_transport(scope, params.base_url)
    now = clock.now()
    account_id = new_id("ca")
    secret = params.credentials.secret
    context = credentials_context(account_id, scope.merchant_id, params.provider, params.base_url)
    data_key_id, sealed = await vault.seal(conn, context, _sealable(params.credentials), now)
    row = {
        "id": account_id,
        "livemode": scope.livemode,
        "provider": params.provider,
        "name": params.name if params.name is not None else params.provider,
        "base_url": params.base_url,
        "currencies": params.currencies,
        "enabled": params.enabled,
        "data_key_id": data_key_id,
        "credentials_sealed": sealed,
        "credentials_last4": secret[-4:],
        "metadata": params.metadata,
        "created_at": now,
        "updated_at": now,
    }
    await repo.insert_account(conn, scope, row)
    obj = connector_account_object(row)
    await emit(
        conn,
        scope,
        now,
        [OutboxEvent("connector_account.created", "connector_account", account_id, obj)],
    )
    return obj


async def get_connector_account(conn: Conn, scope: Scope, account_id: str) -> dict[str, Any]:
    rows = await repo.fetch_accounts(conn, scope, [account_id])
    if not rows:
        raise NotFound("connector_account", account_id)
    return connector_account_object(rows[0])


async def list_connector_accounts(
    conn: Conn, scope: Scope, ids: Sequence[str]
) -> list[dict[str, Any]]:
    return [connector_account_object(r) for r in await repo.fetch_accounts(conn, scope, ids)]


async def update_connector_account(
    conn: Conn,
    scope: Scope,
    clock: Clock,
    vault: Vault,
    account_id: str,
    params: ConnectorAccountUpdate,
) -> dict[str, Any]:
    """Change the fields sent. An update that changes nothing writes nothing and emits no
    event, so retrying one is harmless."""
    row = await repo.lock_account(conn, scope, account_id)
    if row is None:
        raise NotFound("connector_account", account_id)
    given = params.model_fields_set
    new = dict(row)
    for name in ("name", "enabled", "currencies"):
        if name in given:
            new[name] = getattr(params, name)
    if "base_url" in given:
        if params.base_url is None and row["provider"] == "sandbox":
            raise InvalidRequest(
                "Invalid base_url: a sandbox account cannot be without one; it is the URL"
                " the sandbox PSP runs at.",
                param="base_url",
                code="parameter_invalid",
            )
        _check_transport(scope, params.base_url)
        new["base_url"] = params.base_url
    if "metadata" in given:
        # None clears every key; otherwise Stripe's merge.
        new["metadata"] = (
            {} if params.metadata is None else merge_metadata(row["metadata"], params.metadata)
        )
    sealed: tuple[str, bytes] | None = None
    now = clock.now()
    if new["base_url"] != row["base_url"] and params.credentials is None:
        raise InvalidRequest(
            "Changing base_url needs credentials[secret] sent again: credentials are bound"
            " to the URL they are sent to.",
            param="credentials[secret]",
            code="parameter_missing",
        )
    if params.credentials is not None:
        secret = params.credentials.secret
        context = credentials_context(
            account_id, scope.merchant_id, row["provider"], new["base_url"]
        )
        sealed = await vault.seal(conn, context, _sealable(params.credentials), now)
        new["credentials_last4"] = secret[-4:]
    if sealed is None and new == row:
        return connector_account_object(row)
    new["updated_at"] = now
    await repo.update_account(conn, scope, new, sealed)
    obj = connector_account_object(new)
    await emit(
        conn,
        scope,
        now,
        [OutboxEvent("connector_account.updated", "connector_account", account_id, obj)],
    )
    return obj


def _mode(livemode: bool) -> str:
    return "live" if livemode else "test"


async def _check_chain(conn: Conn, scope: Scope, ids: Sequence[str]) -> None:
    """Each account named once, and each the caller's own, in the caller's mode."""
    for index, account_id in enumerate(ids):
        if account_id in ids[:index]:
            raise InvalidRequest(
                f"Invalid connector_accounts[{index}]: '{account_id}' is already named at"
                f" connector_accounts[{ids.index(account_id)}]; name each account once.",
                param=f"connector_accounts[{index}]",
                code="parameter_invalid",
            )
    modes = await repo.account_modes(conn, scope.merchant_id, ids)
    for index, account_id in enumerate(ids):
        param = f"connector_accounts[{index}]"
        mode = modes.get(account_id)
        if mode is None:
            raise NotFound("connector_account", account_id, param=param)
        if mode != scope.livemode:
            # Stripe's wording: the merchant's own account, but of the other mode.
            raise ResourceMissing(
                f"No such connector_account: '{account_id}'; a similar object exists in"
                f" {_mode(mode)} mode, but a {_mode(scope.livemode)} mode key was used to"
                " make this request.",
                param=param,
                code="resource_missing",
            )


async def create_routing_rule(
    conn: Conn, scope: Scope, clock: Clock, params: RoutingRuleCreate
) -> dict[str, Any]:
    await _check_chain(conn, scope, params.connector_accounts)
    now = clock.now()
    rule_id = new_id("rr")
    row = {
        "id": rule_id,
        "livemode": scope.livemode,
        "priority": params.priority,
        "conditions": params.conditions.model_dump(),
        "connector_accounts": params.connector_accounts,
        "created_at": now,
    }
    await repo.insert_rule(conn, scope, row)
    obj = routing_rule_object(row)
    await emit(
        conn, scope, now, [OutboxEvent("routing_rule.created", "routing_rule", rule_id, obj)]
    )
    return obj


async def get_routing_rule(conn: Conn, scope: Scope, rule_id: str) -> dict[str, Any]:
    rows = await repo.fetch_rules(conn, scope, [rule_id])
    if not rows:
        raise NotFound("routing_rule", rule_id)
    return routing_rule_object(rows[0])


async def list_routing_rules(conn: Conn, scope: Scope, ids: Sequence[str]) -> list[dict[str, Any]]:
    return [routing_rule_object(r) for r in await repo.fetch_rules(conn, scope, ids)]


async def delete_routing_rule(
    conn: Conn, scope: Scope, clock: Clock, rule_id: str
) -> dict[str, Any]:
    """Stripe's deletion: the answer is a stub; the event carries the rule as it was."""
    row = await repo.delete_rule(conn, scope, rule_id)
    if row is None:
        raise NotFound("routing_rule", rule_id)
    obj = routing_rule_object(row)
    await emit(
        conn,
        scope,
        clock.now(),
        [OutboxEvent("routing_rule.deleted", "routing_rule", rule_id, obj)],
    )
    return {"id": rule_id, "object": "routing_rule", "deleted": True}


def _conditions(stored: dict[str, Any]) -> routing.Conditions:
    return routing.Conditions(
        currencies=frozenset(stored["currencies"]),
        countries=frozenset(stored["countries"]),
        payment_methods=frozenset(stored["payment_methods"]),
        min_amount=stored["min_amount"],
        max_amount=stored["max_amount"],
    )


async def load_routing(
    conn: Conn, scope: Scope
) -> tuple[list[routing.Rule], list[routing.Account]]:
    """The merchant's rules and accounts in this mode, as `routing.route` takes them.
    Rules of equal priority keep their creation order (route sorts stably); accounts come
    oldest first, the order they are offered in when no rule matches."""
    rules, accounts = await repo.routing(conn, scope)
    return (
        [
            routing.Rule(
                r["priority"], _conditions(r["conditions"]), tuple(r["connector_accounts"])
            )
            for r in rules
        ],
        [
            routing.Account(account_id, enabled, frozenset(currencies))
            for account_id, enabled, currencies in accounts
        ],
    )


class Connectors:
    """Connectors kept open between calls, one per account: a new HTTP client (and its
    connection) for every payment would cost more than the payment. An account whose
    endpoint or credentials changed gets a new one."""

    def __init__(self, *, timeout: float = 10.0) -> None:
        self._timeout = timeout  # seconds a provider has to answer one request
        self._open: dict[str, tuple[tuple[str, str], SandboxConnector]] = {}
        # Replaced connectors may still be in use by requests under way: closed last.
        self._retired: list[SandboxConnector] = []

    async def get(self, conn: Conn, scope: Scope, vault: Vault, account_id: str) -> Connector:
        """The connector for one account, its credentials opened. A disabled account still
        gets one: an in-doubt attempt made through it must be resolved by asking it."""
        found = await repo.sealed_credentials(conn, scope, account_id)
        if found is None:
            raise NotFound("connector_account", account_id, param="connector_account")
        provider, base_url, data_key_id, sealed = found
        if provider != "sandbox":
            raise ConnectorNotImplemented(account_id, provider)
        assert base_url is not None  # connector_accounts_sandbox_base_url
        context = credentials_context(account_id, scope.merchant_id, provider, base_url)
        opened = await vault.open(conn, context, data_key_id, sealed)
        kept = self._open.get(account_id)
        if kept is not None and kept[0] == (base_url, opened):
            return kept[1]
        secret, _, webhook_secret = opened.partition("\n")
        if not webhook_secret:
            # The sandbox's published default signs test webhooks out of the box (sandbox
            # accounts are test mode only, so no live webhook takes a published secret).
            webhook_secret = DEFAULT_WEBHOOK_SECRET
        connector = SandboxConnector(
            base_url, secret, timeout=self._timeout, webhook_secret=webhook_secret
        )
        self._open[account_id] = ((base_url, opened), connector)
        if kept is not None:
            self._retired.append(kept[1])
        return connector

    async def aclose(self) -> None:
        for _, connector in self._open.values():
            await connector.aclose()
        for connector in self._retired:
            await connector.aclose()
        self._open.clear()
        self._retired.clear()
