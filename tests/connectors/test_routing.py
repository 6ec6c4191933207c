from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payrail.connectors.base import ConnectorError
from payrail.connectors.declines import classify, classify_transport
from payrail.connectors.routing import (
    Account,
    Conditions,
    NoRoute,
    RoutingInput,
    Rule,
    route,
    with_failover,
)

EUR_CARD = RoutingInput(amount=5_000, currency="EUR", country="DE", payment_method="card:visa")
ACCOUNTS = [
    Account("ca_stripe", True),
    Account("ca_adyen", True, frozenset({"EUR", "GBP"})),
    Account("ca_paypal", True),
    Account("ca_off", False),
]


def test_the_first_matching_rule_by_priority_names_the_chain() -> None:
    rules = [
        Rule(20, Conditions(), ("ca_stripe",)),
        Rule(10, Conditions(currencies=frozenset({"EUR"})), ("ca_adyen", "ca_stripe")),
    ]
    assert route(rules, ACCOUNTS, EUR_CARD) == ["ca_adyen", "ca_stripe"]
    usd = RoutingInput(5_000, "USD", "US", "card:visa")
    assert route(rules, ACCOUNTS, usd) == ["ca_stripe"]


@pytest.mark.parametrize(
    ("conditions", "matches"),
    [
        (Conditions(countries=frozenset({"DE", "AT"})), True),
        (Conditions(countries=frozenset({"FR"})), False),
        (Conditions(payment_methods=frozenset({"card"})), True),
        (Conditions(payment_methods=frozenset({"card:amex"})), False),
        (Conditions(payment_methods=frozenset({"card:visa"})), True),
        (Conditions(min_amount=5_000), True),
        (Conditions(min_amount=5_001), False),
        (Conditions(max_amount=5_000), True),
        (Conditions(max_amount=4_999), False),
        (Conditions(currencies=frozenset({"EUR"}), countries=frozenset({"FR"})), False),
    ],
)
def test_every_condition_given_must_hold(conditions: Conditions, matches: bool) -> None:
    assert conditions.match(EUR_CARD) is matches


def test_disabled_accounts_and_accounts_without_the_currency_are_skipped() -> None:
    rules = [Rule(1, Conditions(), ("ca_off", "ca_adyen", "ca_paypal"))]
    assert route(rules, ACCOUNTS, EUR_CARD) == ["ca_adyen", "ca_paypal"]
    jpy = RoutingInput(500, "JPY", "JP", "card:jcb")
    assert route(rules, ACCOUNTS, jpy) == ["ca_paypal"]


def test_a_rule_whose_accounts_are_all_unusable_falls_through() -> None:
    rules = [Rule(1, Conditions(), ("ca_off",)), Rule(2, Conditions(), ("ca_paypal",))]
    assert route(rules, ACCOUNTS, EUR_CARD) == ["ca_paypal"]


def test_without_rules_every_usable_account_in_order() -> None:
    assert route([], ACCOUNTS, EUR_CARD) == ["ca_stripe", "ca_adyen", "ca_paypal"]
    with pytest.raises(NoRoute):
        route([], [Account("ca_off", False)], EUR_CARD)


@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.lists(st.sampled_from([a.id for a in ACCOUNTS]))),
        max_size=5,
    ),
    st.sampled_from(["EUR", "USD", "JPY"]),
)
def test_a_route_never_names_an_unusable_account(
    raw_rules: list[tuple[int, list[str]]], currency: str
) -> None:
    rules = [Rule(p, Conditions(), tuple(ids)) for p, ids in raw_rules]
    payment = RoutingInput(100, currency, None, "card:visa")
    chosen = route(rules, ACCOUNTS, payment)
    usable = {
        a.id for a in ACCOUNTS if a.enabled and (not a.currencies or currency in a.currencies)
    }
    assert chosen and set(chosen) <= usable
    assert len(chosen) == len(set(chosen))


TECHNICAL = ConnectorError(classify_transport(sent=False, status=None))
IN_DOUBT = ConnectorError(classify_transport(sent=True, status=None))


async def test_failover_moves_on_after_a_technical_error_only() -> None:
    called: list[str] = []

    async def call(account: str) -> str:
        called.append(account)
        if account == "a":
            raise TECHNICAL
        return f"charged at {account}"

    answer, attempts = await with_failover(["a", "b", "c"], call)
    assert answer == "charged at b" and called == ["a", "b"]
    assert [(a.account_id, a.error) for a in attempts] == [("a", TECHNICAL), ("b", None)]


async def test_failover_stops_at_an_in_doubt_outcome() -> None:
    called: list[str] = []

    async def call(account: str) -> str:
        called.append(account)
        raise IN_DOUBT if account == "b" else TECHNICAL

    answer, attempts = await with_failover(["a", "b", "c"], call)
    assert answer is None and called == ["a", "b"], "c must never be asked to charge"
    assert attempts[-1].error is IN_DOUBT


async def test_when_every_account_fails_technically_none_answered() -> None:
    async def call(account: str) -> str:
        raise TECHNICAL

    answer, attempts = await with_failover(["a", "b"], call)
    assert answer is None and [a.account_id for a in attempts] == ["a", "b"]


async def test_failover_stops_at_a_decline() -> None:
    declined = ConnectorError(classify("sandbox", "stolen_card"))
    called: list[str] = []

    async def call(account: str) -> str:
        called.append(account)
        raise declined

    answer, attempts = await with_failover(["a", "b"], call)
    assert answer is None and called == ["a"], "another acquirer must not ask again"
    assert attempts[-1].error is declined
