from __future__ import annotations

import httpx

from payrail.tenants.service import NewMerchant


async def test_live_server_answers(live_server: str, merchant: NewMerchant) -> None:
    async with httpx.AsyncClient(base_url=live_server) as http:
        reply = await http.get(
            "/v1/ledger/accounts", headers={"Authorization": f"Bearer {merchant.test_secret}"}
        )
    assert reply.status_code == 200
    assert reply.json()["data"] == []
