from __future__ import annotations

import httpx


async def test_account_and_transaction(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    cash = await client.post(
        "/v1/ledger/accounts",
        headers=auth,
        data={"name": "Cash", "type": "asset", "currency": "usd"},
    )
    assert cash.status_code == 200, cash.text
    rev = await client.post(
        "/v1/ledger/accounts",
        headers=auth,
        json={"name": "Revenue", "type": "revenue", "currency": "USD", "balance_shards": 8},
    )
    assert rev.status_code == 200, rev.text
    tx = await client.post(
        "/v1/ledger/transactions",
        headers=auth,
        data={
            "external_id": "order-1",
            "entries[0][account]": cash.json()["id"],
            "entries[0][direction]": "debit",
            "entries[0][amount]": "1000",
            "entries[1][account]": rev.json()["id"],
            "entries[1][direction]": "credit",
            "entries[1][amount]": "1000",
            "metadata[order_id]": "42",
        },
    )
    assert tx.status_code == 200, tx.text
    assert tx.headers["request-id"].startswith("req_")
    body = tx.json()
    assert body["status"] == "posted"
    assert body["metadata"] == {"order_id": "42"}
    got = await client.get(f"/v1/ledger/accounts/{rev.json()['id']}", headers=auth)
    assert got.json()["balances"]["posted"]["amount"] == 1000
