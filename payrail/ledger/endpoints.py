"""/v1/ledger: accounts, transactions (create, batch, post, void, reverse), balances."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from psycopg import sql

from payrail.api.auth import require_key
from payrail.api.context import RequestContext
from payrail.api.http import Conn, read, request_body, write
from payrail.api.pagination import ListParams, list_object, page_ids
from payrail.api.schemas import NoParams
from payrail.ledger import service
from payrail.ledger.schemas import (
    AccountCreate,
    TransactionBatchCreate,
    TransactionCreate,
    TransactionPost,
    TransactionReverse,
    TransactionVoid,
)
from payrail.tenants.scope import Scope

router = APIRouter(prefix="/v1/ledger", tags=["ledger"])
Ctx = Depends(require_key)


class TransactionListParams(ListParams):
    status: Literal["pending", "posted", "voided"] | None = None
    account: str | None = None
    external_id: str | None = None


@router.post("/accounts", openapi_extra=request_body(AccountCreate))
async def create_account(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: AccountCreate) -> dict[str, Any]:
        return await service.create_account(conn, scope, ctx.services.clock, params)

    return await write(request, ctx, AccountCreate, work)


@router.get("/accounts")
async def list_accounts(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: ListParams) -> dict[str, Any]:
        ids, more = await page_ids(conn, "ledger_accounts", scope, params)
        return list_object(request.url.path, await service.list_accounts(conn, scope, ids), more)

    return await read(request, ctx, ListParams, work)


@router.get("/accounts/{account_id}")
async def get_account(account_id: str, request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: NoParams) -> dict[str, Any]:
        return await service.get_account(conn, scope, account_id)

    return await read(request, ctx, NoParams, work)


@router.get("/accounts/{account_id}/balances")
async def get_balances(account_id: str, request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: NoParams) -> dict[str, Any]:
        account = await service.get_account(conn, scope, account_id)
        return {
            "object": "ledger_balances",
            "account": account_id,
            "currency": account["currency"],
            **account["balances"],
        }

    return await read(request, ctx, NoParams, work)


@router.post("/transactions", openapi_extra=request_body(TransactionCreate))
async def create_transaction(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: TransactionCreate) -> dict[str, Any]:
        [created] = await service.post_transactions(conn, scope, ctx.services.clock, [params])
        return created

    return await write(request, ctx, TransactionCreate, work)


@router.post("/transactions/batch", openapi_extra=request_body(TransactionBatchCreate))
async def create_transaction_batch(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: TransactionBatchCreate) -> dict[str, Any]:
        created = await service.post_transactions(
            conn, scope, ctx.services.clock, params.transactions, batched=True
        )
        return list_object(request.url.path, created, False)

    return await write(request, ctx, TransactionBatchCreate, work)


@router.get("/transactions")
async def list_transactions(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: TransactionListParams) -> dict[str, Any]:
        filters: list[tuple[sql.Composable, Any]] = []
        if params.status:
            filters.append((sql.SQL("status = %s"), params.status))
        if params.external_id:
            filters.append((sql.SQL("external_id = %s"), params.external_id))
        if params.account:
            filters.append(
                (
                    sql.SQL(
                        "id IN (SELECT transaction_id FROM ledger_entries WHERE account_id = %s)"
                    ),
                    params.account,
                )
            )
        ids, more = await page_ids(conn, "ledger_transactions", scope, params, filters)
        data = await service.list_transactions(conn, scope, ids)
        return list_object(request.url.path, data, more)

    return await read(request, ctx, TransactionListParams, work)


@router.get("/transactions/{transaction_id}")
async def get_transaction(
    transaction_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: NoParams) -> dict[str, Any]:
        return await service.get_transaction(conn, scope, transaction_id)

    return await read(request, ctx, NoParams, work)


@router.post("/transactions/{transaction_id}/post", openapi_extra=request_body(TransactionPost))
async def post_transaction(
    transaction_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: TransactionPost) -> dict[str, Any]:
        return await service.post_pending(
            conn, scope, ctx.services.clock, transaction_id, params.amount
        )

    return await write(request, ctx, TransactionPost, work)


@router.post("/transactions/{transaction_id}/void", openapi_extra=request_body(TransactionVoid))
async def void_transaction(
    transaction_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: TransactionVoid) -> dict[str, Any]:
        return await service.void_pending(conn, scope, ctx.services.clock, transaction_id)

    return await write(request, ctx, TransactionVoid, work)


@router.post(
    "/transactions/{transaction_id}/reverse", openapi_extra=request_body(TransactionReverse)
)
async def reverse_transaction(
    transaction_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: TransactionReverse) -> dict[str, Any]:
        return await service.reverse(
            conn,
            scope,
            ctx.services.clock,
            transaction_id,
            external_id=params.external_id,
            description=params.description,
            metadata=params.metadata,
        )

    return await write(request, ctx, TransactionReverse, work)
