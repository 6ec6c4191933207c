"""Which connector account takes a payment, and what happens when one fails: decided by
plain functions over values.

A merchant's rules are tried in priority order; the first whose conditions all hold
names the accounts to use, in order. The first account gets the payment, and the others
are its failover chain. Failover moves on only after a technical error, which means the
request certainly did not charge. It stops at an in-doubt outcome: the attempt must be
resolved by asking its provider, or the customer could be charged twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from payrail.connectors.base import ConnectorError
from payrail.connectors.declines import Decision


@dataclass(frozen=True, slots=True)
class RoutingInput:
    amount: int
    currency: str  # ISO 4217, upper case
    country: str | None  # the card's or customer's ISO 3166 alpha-2 country, upper case
    payment_method: str  # "card" and, for cards, the brand: "card:visa"


@dataclass(frozen=True, slots=True)
class Conditions:
    """Every condition given must hold; an empty set of conditions matches everything."""

    currencies: frozenset[str] = frozenset()
    countries: frozenset[str] = frozenset()
    payment_methods: frozenset[str] = frozenset()  # "card" matches every "card:*"
    min_amount: int | None = None
    max_amount: int | None = None

    def match(self, payment: RoutingInput) -> bool:
        method = payment.payment_method
        return (
            (not self.currencies or payment.currency in self.currencies)
            and (not self.countries or payment.country in self.countries)
            and (
                not self.payment_methods
                or method in self.payment_methods
                or method.split(":", 1)[0] in self.payment_methods
            )
            and (self.min_amount is None or payment.amount >= self.min_amount)
            and (self.max_amount is None or payment.amount <= self.max_amount)
        )


@dataclass(frozen=True, slots=True)
class Rule:
    priority: int  # lower first
    conditions: Conditions
    accounts: tuple[str, ...]  # connector account ids, preferred first


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    enabled: bool
    currencies: frozenset[str] = field(default_factory=frozenset)  # empty: any

    def takes(self, currency: str) -> bool:
        return self.enabled and (not self.currencies or currency in self.currencies)


class NoRoute(Exception):
    """No enabled account can take this payment."""


def route(rules: Sequence[Rule], accounts: Sequence[Account], payment: RoutingInput) -> list[str]:
    """The accounts to try, in order: the first matching rule's, enabled and able to take
    the currency; with no rule matching, every such account in the order given."""
    usable = {a.id: a for a in accounts if a.takes(payment.currency)}
    for rule in sorted(rules, key=lambda r: r.priority):
        if rule.conditions.match(payment):
            # A rule naming an account twice must not try it twice.
            chosen = list(dict.fromkeys(a for a in rule.accounts if a in usable))
            if chosen:
                return chosen
    if usable:
        return list(usable)
    raise NoRoute(f"no enabled connector account takes {payment.currency} {payment.payment_method}")


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Attempted:
    account_id: str
    error: ConnectorError | None  # None: this account answered


async def with_failover(
    chain: Sequence[str], call: Callable[[str], Awaitable[T]]
) -> tuple[T | None, list[Attempted]]:
    """Call each account in turn until one answers. Returns the answer (None if none
    answered) and what happened at each account tried. Moves on only after a technical
    error; stops at an in-doubt one (that attempt may have charged) and at a decline."""
    attempts: list[Attempted] = []
    for account_id in chain:
        try:
            answer = await call(account_id)
        except ConnectorError as error:
            attempts.append(Attempted(account_id, error))
            # Only a request that certainly charged nothing and decided nothing moves on: a
            # decline is the issuer's answer, and another acquirer must not ask again.
            if error.classification.decision is not Decision.TECHNICAL:
                return None, attempts
            continue
        attempts.append(Attempted(account_id, None))
        return answer, attempts
    return None, attempts
