"""The ledger's decision functions (payrail.ledger.postings), without a database."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payrail.errors import InvalidRequest
from payrail.ledger.postings import (
    BalanceTotals,
    Direction,
    Entry,
    Phase,
    balances,
    check_nets,
    content_hash,
    effective,
    held,
    post,
    release,
    reversal,
)

FAST = settings(max_examples=150, deadline=None, database=None)


def e(
    account: str,
    direction: Direction,
    amount: int,
    phase: Phase = "posted",
    currency: str = "USD",
) -> Entry:
    return Entry(account, currency, direction, amount, phase)


def net(entries: Iterable[Entry], phase: Phase) -> dict[tuple[str, Direction], int]:
    """Signed-free sum of amounts per (account, direction) in one phase, zeros dropped."""
    totals: dict[tuple[str, Direction], int] = defaultdict(int)
    for entry in entries:
        if entry.phase == phase:
            totals[(entry.account_id, entry.direction)] += entry.amount
    return {key: amount for key, amount in totals.items() if amount != 0}


def signed_per_account(entries: Iterable[Entry], phase: Phase) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for entry in entries:
        if entry.phase == phase:
            totals[entry.account_id] += entry.signed
    return dict(totals)


# --------------------------------------------------------------------------- strategies

ACCOUNTS = ["acct_a", "acct_b", "acct_c", "acct_d"]
CURRENCIES = ["USD", "JPY", "BHD"]


@st.composite
def balanced_legs(
    draw: st.DrawFn, currency: str, phase: Phase, max_amount: int = 10**6
) -> list[Entry]:
    """One currency's entries: 1-3 debits and 1-3 credits with equal totals."""
    debits = draw(st.lists(st.integers(1, max_amount), min_size=1, max_size=3))
    total = sum(debits)
    parts = draw(st.integers(1, min(3, total)))
    cuts: list[int] = []
    if parts > 1:
        cuts = sorted(
            draw(st.sets(st.integers(1, total - 1), min_size=parts - 1, max_size=parts - 1))
        )
    credits = [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]
    account = st.sampled_from(ACCOUNTS)
    legs = [e(draw(account), "debit", amount, phase, currency) for amount in debits]
    legs += [e(draw(account), "credit", amount, phase, currency) for amount in credits]
    return draw(st.permutations(legs))


@st.composite
def balanced_transaction(draw: st.DrawFn, phase: Phase) -> list[Entry]:
    currencies = draw(st.lists(st.sampled_from(CURRENCIES), min_size=1, max_size=3, unique=True))
    entries: list[Entry] = []
    for currency in currencies:
        entries += draw(balanced_legs(currency, phase))
    return draw(st.permutations(entries))


@st.composite
def two_leg_pending(draw: st.DrawFn) -> list[Entry]:
    amount = draw(st.integers(1, 10**9))
    debit, credit = draw(st.lists(st.sampled_from(ACCOUNTS), min_size=2, max_size=2))
    return [e(debit, "debit", amount, "pending"), e(credit, "credit", amount, "pending")]


# --------------------------------------------------------------------------- Entry


def test_signed_is_positive_for_debits_and_negative_for_credits() -> None:
    assert e("a", "debit", 250).signed == 250
    assert e("a", "credit", 250).signed == -250
    assert e("a", "debit", -40, "pending").signed == -40
    assert e("a", "credit", -40, "pending").signed == 40


# --------------------------------------------------------------------------- check_nets


def check_balanced(entries: Iterable[Entry], *, param: str = "entries") -> None:
    """The balance rule over entries of any phase: check_nets, phase by phase."""
    entries = list(entries)
    for phase in ("pending", "posted"):
        nets: dict[str, int] = defaultdict(int)
        for entry in entries:
            if entry.phase == phase:
                nets[entry.currency] += entry.signed
        check_nets(nets, param=param)


def test_balanced_single_currency_passes() -> None:
    check_balanced([e("a", "debit", 1000), e("b", "credit", 600), e("c", "credit", 400)])


def test_unbalanced_single_currency_is_rejected_with_code_and_param() -> None:
    with pytest.raises(InvalidRequest) as info:
        check_balanced([e("a", "debit", 1000), e("b", "credit", 999)])
    assert info.value.code == "transaction_unbalanced"
    assert info.value.param == "entries"
    assert info.value.status == 400
    assert "USD" in info.value.message

    with pytest.raises(InvalidRequest) as info:
        check_balanced([e("a", "debit", 1), e("b", "credit", 2)], param="transactions[3]entries")
    assert info.value.param == "transactions[3]entries"


def test_balance_is_checked_per_currency_not_in_total() -> None:
    # 100 USD debit and 100 JPY credit net to zero as integers but are not balanced.
    entries = [e("a", "debit", 100, currency="USD"), e("b", "credit", 100, currency="JPY")]
    with pytest.raises(InvalidRequest) as info:
        check_balanced(entries)
    assert info.value.code == "transaction_unbalanced"
    assert info.value.message.endswith("they differ in JPY, USD.")


def test_each_currency_balanced_on_its_own_passes() -> None:
    check_balanced(
        [
            e("a", "debit", 100, currency="USD"),
            e("b", "credit", 100, currency="USD"),
            e("c", "debit", 7, currency="JPY"),
            e("d", "credit", 7, currency="JPY"),
            e("e", "credit", 1, currency="BHD"),
            e("f", "debit", 1, currency="BHD"),
        ]
    )


def test_only_the_unbalanced_currency_is_named() -> None:
    entries = [
        e("a", "debit", 100, currency="USD"),
        e("b", "credit", 100, currency="USD"),
        e("c", "debit", 7, currency="JPY"),
        e("d", "credit", 6, currency="JPY"),
    ]
    with pytest.raises(InvalidRequest) as info:
        check_balanced(entries)
    assert info.value.message.endswith("they differ in JPY.")


def test_balance_is_checked_per_phase() -> None:
    # A pending debit cannot be balanced by a posted credit.
    with pytest.raises(InvalidRequest):
        check_balanced([e("a", "debit", 100, "pending"), e("b", "credit", 100, "posted")])
    check_balanced(
        [
            e("a", "debit", 100, "pending"),
            e("b", "credit", 100, "pending"),
            e("a", "debit", 5, "posted"),
            e("b", "credit", 5, "posted"),
        ]
    )


def test_releases_balance_like_holds() -> None:
    check_balanced([e("a", "debit", -100, "pending"), e("b", "credit", -100, "pending")])
    with pytest.raises(InvalidRequest):
        check_balanced([e("a", "debit", -100, "pending"), e("b", "credit", 100, "pending")])


@FAST
@given(balanced_transaction("posted"))
def test_generated_balanced_transactions_pass(entries: list[Entry]) -> None:
    check_balanced(entries)


@FAST
@given(balanced_transaction("posted"), st.data())
def test_any_perturbation_is_rejected_naming_exactly_that_currency(
    entries: list[Entry], data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(entries) - 1))
    delta = data.draw(st.integers(1, 10**6))
    victim = entries[index]
    broken = list(entries)
    broken[index] = Entry(
        victim.account_id, victim.currency, victim.direction, victim.amount + delta, victim.phase
    )
    with pytest.raises(InvalidRequest) as info:
        check_balanced(broken)
    assert info.value.code == "transaction_unbalanced"
    assert info.value.message.endswith(f"they differ in {victim.currency}.")


# --------------------------------------------------------------------------- content_hash


def test_content_hash_ignores_key_order_and_sees_every_value() -> None:
    a = content_hash({"entries": [{"account": "x", "amount": 1}], "pending": False})
    b = content_hash({"pending": False, "entries": [{"amount": 1, "account": "x"}]})
    assert a == b
    assert len(a) == 32
    assert a != content_hash({"entries": [{"account": "x", "amount": 2}], "pending": False})
    assert a != content_hash({"entries": [{"account": "x", "amount": 1}], "pending": True})
    assert a != content_hash({"entries": [{"account": "x", "amount": 1}], "pending": False, "m": 1})


# --------------------------------------------------------------------------- held / release


def test_held_nets_pending_amounts_per_account_and_direction() -> None:
    entries = [
        e("a", "debit", 60, "pending"),
        e("a", "debit", 40, "pending"),
        e("b", "credit", 100, "pending"),
        e("a", "debit", 999, "posted"),  # posted entries hold nothing
    ]
    assert Counter(held(entries)) == Counter(
        [e("a", "debit", 100, "pending"), e("b", "credit", 100, "pending")]
    )


def test_a_released_hold_is_held_no_more() -> None:
    entries = [e("a", "debit", 100, "pending"), e("b", "credit", 100, "pending")]
    assert held(entries + release(entries)) == []
    assert release(entries + release(entries)) == []


def test_release_negates_each_hold() -> None:
    entries = [
        e("a", "debit", 70, "pending", "JPY"),
        e("a", "credit", 30, "pending", "JPY"),
        e("b", "credit", 40, "pending", "JPY"),
    ]
    assert Counter(release(entries)) == Counter(
        [
            e("a", "debit", -70, "pending", "JPY"),
            e("a", "credit", -30, "pending", "JPY"),
            e("b", "credit", -40, "pending", "JPY"),
        ]
    )


@FAST
@given(balanced_transaction("pending"))
def test_release_nets_every_pending_amount_to_zero(entries: list[Entry]) -> None:
    released = release(entries)
    assert all(r.amount < 0 and r.phase == "pending" for r in released)
    check_balanced(released)
    assert net(entries + released, "pending") == {}
    assert signed_per_account(entries + released, "pending") == dict.fromkeys(
        signed_per_account(entries, "pending"), 0
    )
    assert net(released, "posted") == {}


# --------------------------------------------------------------------------- post


def test_post_in_full_releases_and_posts_each_hold() -> None:
    entries = [
        e("a", "debit", 60, "pending"),
        e("b", "credit", 45, "pending"),
        e("c", "credit", 15, "pending"),
    ]
    appended = post(entries, None)
    assert Counter(appended) == Counter(
        [
            e("a", "debit", -60, "pending"),
            e("b", "credit", -45, "pending"),
            e("c", "credit", -15, "pending"),
            e("a", "debit", 60, "posted"),
            e("b", "credit", 45, "posted"),
            e("c", "credit", 15, "posted"),
        ]
    )
    check_balanced(appended)
    assert net(entries + appended, "pending") == {}


def test_post_partial_two_leg_posts_the_amount_and_releases_everything() -> None:
    entries = [e("a", "debit", 100, "pending"), e("b", "credit", 100, "pending")]
    appended = post(entries, 30)
    assert Counter(appended) == Counter(
        [
            e("a", "debit", -100, "pending"),
            e("b", "credit", -100, "pending"),
            e("a", "debit", 30, "posted"),
            e("b", "credit", 30, "posted"),
        ]
    )
    assert net(entries + appended, "pending") == {}
    assert net(entries + appended, "posted") == {("a", "debit"): 30, ("b", "credit"): 30}


def test_post_partial_of_exactly_the_pending_amount_is_allowed() -> None:
    entries = [e("a", "debit", 100, "pending"), e("b", "credit", 100, "pending")]
    assert net(post(entries, 100), "posted") == {("a", "debit"): 100, ("b", "credit"): 100}


def test_post_partial_more_than_pending_is_rejected() -> None:
    entries = [e("a", "debit", 100, "pending"), e("b", "credit", 100, "pending")]
    with pytest.raises(InvalidRequest) as info:
        post(entries, 101)
    assert info.value.code == "amount_too_large"
    assert info.value.param == "amount"


def test_post_partial_counts_net_holds_not_raw_entries() -> None:
    # Two debits on one account are one hold: the transaction still has two legs.
    entries = [
        e("a", "debit", 60, "pending"),
        e("a", "debit", 40, "pending"),
        e("b", "credit", 100, "pending"),
    ]
    appended = post(entries, 70)
    assert net(entries + appended, "pending") == {}
    assert net(appended, "posted") == {("a", "debit"): 70, ("b", "credit"): 70}
    with pytest.raises(InvalidRequest) as info:
        post(entries, 101)
    assert info.value.code == "amount_too_large"


def test_post_partial_is_refused_for_more_than_two_legs() -> None:
    entries = [
        e("a", "debit", 60, "pending"),
        e("b", "credit", 45, "pending"),
        e("c", "credit", 15, "pending"),
    ]
    with pytest.raises(InvalidRequest) as info:
        post(entries, 10)
    assert info.value.param == "amount"


def test_post_of_an_already_released_transaction_appends_nothing() -> None:
    entries = [e("a", "debit", 100, "pending"), e("b", "credit", 100, "pending")]
    settled = entries + release(entries)
    assert post(settled, None) == []
    with pytest.raises(InvalidRequest):
        post(settled, 10)


@FAST
@given(balanced_transaction("pending"))
def test_post_in_full_moves_the_holds_to_posted(entries: list[Entry]) -> None:
    appended = post(entries, None)
    check_balanced(appended)
    check_balanced(entries + appended)
    after = entries + appended
    assert net(after, "pending") == {}
    assert net(after, "posted") == net(entries, "pending")
    # Each account's signed posted movement is exactly what it had on hold.
    assert {k: v for k, v in signed_per_account(after, "posted").items() if v} == {
        k: v for k, v in signed_per_account(entries, "pending").items() if v
    }


@FAST
@given(two_leg_pending(), st.data())
def test_post_partial_then_nothing_remains_pending(
    entries: list[Entry], data: st.DataObject
) -> None:
    hold = entries[0].amount
    amount = data.draw(st.integers(1, hold))
    appended = post(entries, amount)
    after = entries + appended
    check_balanced(after)
    assert net(after, "pending") == {}
    debit, credit = entries[0].account_id, entries[1].account_id
    if debit == credit:
        assert net(after, "posted") == {(debit, "debit"): amount, (debit, "credit"): amount}
    else:
        assert net(after, "posted") == {(debit, "debit"): amount, (credit, "credit"): amount}
    with pytest.raises(InvalidRequest):
        post(entries, hold + data.draw(st.integers(1, 10**6)))


# --------------------------------------------------------------------------- reversal


def test_reversal_swaps_directions_of_posted_entries_line_by_line() -> None:
    entries = [
        e("a", "debit", 60),
        e("a", "debit", 40),
        e("b", "credit", 70),
        e("c", "credit", 30),
        e("z", "debit", 5, "pending"),  # ignored: only posted entries are reversed
        e("z", "debit", -5, "pending"),
    ]
    assert reversal(entries) == [
        e("a", "credit", 60),
        e("a", "credit", 40),
        e("b", "debit", 70),
        e("c", "debit", 30),
    ]


def test_reversal_of_a_partially_posted_pending_transaction() -> None:
    entries = [e("a", "debit", 100, "pending"), e("b", "credit", 100, "pending")]
    entries += post(entries, 25)
    assert Counter(reversal(entries)) == Counter([e("a", "credit", 25), e("b", "debit", 25)])


def test_reversal_of_a_self_transfer_keeps_both_sides() -> None:
    entries = [e("a", "debit", 10), e("a", "credit", 10)]
    assert Counter(reversal(entries)) == Counter([e("a", "credit", 10), e("a", "debit", 10)])


@FAST
@given(balanced_transaction("posted"))
def test_reversal_undoes_the_transaction_exactly(entries: list[Entry]) -> None:
    undo = reversal(entries)
    check_balanced(undo)
    assert all(u.phase == "posted" and u.amount > 0 for u in undo)
    combined = signed_per_account(entries + undo, "posted")
    assert set(combined.values()) == {0}
    assert len(undo) == len(entries)
    # Reversing the reversal gives back the original, line by line.
    assert reversal(undo) == effective("posted", entries) == entries


# --------------------------------------------------------------------------- effective


def test_effective_of_posted_is_the_posted_entries_line_by_line() -> None:
    entries = [e("a", "debit", 100, "pending"), e("b", "credit", 100, "pending")]
    entries += post(entries, 40)
    assert effective("posted", entries) == [e("a", "debit", 40), e("b", "credit", 40)]
    lines = [e("a", "debit", 60), e("a", "debit", 40), e("b", "credit", 100)]
    assert effective("posted", lines) == lines


def test_effective_of_pending_and_voided_is_the_original_holds() -> None:
    holds = [e("a", "debit", 100, "pending"), e("b", "credit", 100, "pending")]
    assert effective("pending", holds) == holds
    voided = holds + release(holds)
    assert effective("voided", voided) == holds


# --------------------------------------------------------------------------- balances


def test_balances_of_a_credit_normal_account() -> None:
    totals = BalanceTotals(
        debits_pending=30, credits_pending=50, debits_posted=200, credits_posted=1000
    )
    assert balances("credit", totals) == {
        "posted": {"debits": 200, "credits": 1000, "amount": 800},
        "pending": {"debits": 230, "credits": 1050, "amount": 820},
        # Only pending debits (money leaving a credit-normal account) reduce availability.
        "available": {"debits": 230, "credits": 1000, "amount": 770},
    }


def test_balances_of_a_debit_normal_account() -> None:
    totals = BalanceTotals(
        debits_pending=30, credits_pending=50, debits_posted=1000, credits_posted=200
    )
    assert balances("debit", totals) == {
        "posted": {"debits": 1000, "credits": 200, "amount": 800},
        "pending": {"debits": 1030, "credits": 250, "amount": 780},
        # Only pending credits (money leaving a debit-normal account) reduce availability.
        "available": {"debits": 1000, "credits": 250, "amount": 750},
    }


def test_balances_of_an_empty_account_are_zero() -> None:
    zero = {"debits": 0, "credits": 0, "amount": 0}
    normals: tuple[Direction, ...] = ("debit", "credit")
    for normal in normals:
        assert balances(normal, BalanceTotals(0, 0, 0, 0)) == {
            "posted": zero,
            "pending": zero,
            "available": zero,
        }


def test_balances_can_be_negative_on_the_normal_side() -> None:
    assert balances("credit", BalanceTotals(10, 0, 50, 0))["available"]["amount"] == -60
    assert balances("debit", BalanceTotals(0, 10, 0, 50))["available"]["amount"] == -60


@FAST
@given(
    st.sampled_from(["debit", "credit"]),
    st.integers(0, 10**12),
    st.integers(0, 10**12),
    st.integers(0, 10**12),
    st.integers(0, 10**12),
)
def test_balances_identities(normal: Direction, dp: int, cp: int, dpo: int, cpo: int) -> None:
    got = balances(normal, BalanceTotals(dp, cp, dpo, cpo))
    sign = 1 if normal == "debit" else -1
    assert got["posted"] == {"debits": dpo, "credits": cpo, "amount": sign * (dpo - cpo)}
    assert got["pending"] == {
        "debits": dpo + dp,
        "credits": cpo + cp,
        "amount": sign * (dpo + dp - cpo - cp),
    }
    outflow = cp if normal == "debit" else dp
    assert got["available"]["amount"] == got["posted"]["amount"] - outflow
    assert got["available"]["amount"] <= got["posted"]["amount"]


@FAST
@given(st.sampled_from(["debit", "credit"]), balanced_transaction("pending"))
def test_holding_then_voiding_restores_every_balance(
    normal: Direction, entries: list[Entry]
) -> None:
    """Balances are sums of entries: a hold and its release leave all three at zero."""

    def totals(account: str, rows: list[Entry]) -> BalanceTotals:
        def s(direction: Direction, phase: Phase) -> int:
            return sum(
                r.amount
                for r in rows
                if r.account_id == account and r.direction == direction and r.phase == phase
            )

        return BalanceTotals(
            s("debit", "pending"),
            s("credit", "pending"),
            s("debit", "posted"),
            s("credit", "posted"),
        )

    zero = {"debits": 0, "credits": 0, "amount": 0}
    everything = entries + release(entries)
    for account in {r.account_id for r in entries}:
        assert balances(normal, totals(account, everything)) == {
            "posted": zero,
            "pending": zero,
            "available": zero,
        }
