"""/v1/invoices: read them, pay, finalize, void, mark uncollectible."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from psycopg import sql

from payrail.api.auth import require_key
from payrail.api.context import RequestContext
from payrail.api.http import Conn, read, request_body, write, write_steps
from payrail.api.idempotency import Recovery
from payrail.api.pagination import ListParams, list_object, page_ids
from payrail.billing import collection
from payrail.billing import repository as repo
from payrail.billing.invoices import service
from payrail.billing.invoices.objects import line_object
from payrail.billing.invoices.schemas import InvoiceAction, InvoiceListParams
from payrail.billing.subscriptions.service import billing_now
from payrail.payments.schemas import RetrieveParams
from payrail.tenants.scope import Scope

router = APIRouter(tags=["invoices"])
Ctx = Depends(require_key)


@router.get("/v1/invoices")
async def list_invoices(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: InvoiceListParams) -> dict[str, Any]:
        filters: list[tuple[sql.Composable, Any]] = []
        for column, value in (
            ("customer_id", params.customer),
            ("subscription_id", params.subscription),
            ("status", params.status),
        ):
            if value:
                filters.append((sql.SQL("{} = %s").format(sql.Identifier(column)), value))
        ids, more = await page_ids(conn, "invoices", scope, params, filters)
        rows = await repo.fetch(conn, "invoices", scope, ids)
        return list_object(request.url.path, await service.render(conn, rows), more)

    return await read(request, ctx, InvoiceListParams, work)


@router.get("/v1/invoices/{invoice_id}")
async def get_invoice(invoice_id: str, request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: RetrieveParams) -> dict[str, Any]:
        return await service.get(conn, scope, invoice_id)

    return await read(request, ctx, RetrieveParams, work)


@router.get("/v1/invoices/{invoice_id}/lines")
async def list_invoice_lines(
    invoice_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: ListParams) -> dict[str, Any]:
        await service.invoice(conn, scope, invoice_id)
        lines = (await service.lines_of(conn, [invoice_id]))[invoice_id]
        return list_object(request.url.path, [line_object(line) for line in lines], False)

    return await read(request, ctx, ListParams, work)


@router.post("/v1/invoices/{invoice_id}/pay", openapi_extra=request_body(InvoiceAction))
async def pay_invoice(invoice_id: str, request: Request, ctx: RequestContext = Ctx) -> Response:
    """Collect now, whatever the dunning schedule says (Stripe's pay)."""

    async def work(
        connect: Callable[[], Any], scope: Scope, params: InvoiceAction, recovery: Recovery
    ) -> dict[str, Any]:
        if recovery.resume_from is not None:
            # An earlier run of this request may have made its attempt: follow that one,
            # never make a second.
            await collection.settle(connect, scope, ctx.services, invoice_id)
        else:
            async with connect() as conn, conn.transaction():
                service.require_payable(await service.invoice(conn, scope, invoice_id))
                await recovery.checkpoint(conn, invoice_id)
            await collection.collect(connect, scope, ctx.services, invoice_id, due_only=False)
        async with connect() as conn:
            return await service.get(conn, scope, invoice_id)

    return await write_steps(request, ctx, InvoiceAction, work)


@router.post("/v1/invoices/{invoice_id}/finalize", openapi_extra=request_body(InvoiceAction))
async def finalize_invoice(
    invoice_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: InvoiceAction) -> dict[str, Any]:
        clock = ctx.services.clock
        row = await service.invoice(conn, scope, invoice_id, lock=True)
        service.require_draft(row)
        at = await billing_now(conn, clock, row["test_clock_id"])
        await service.finalize(conn, scope, clock, invoice_id, at)
        return await service.get(conn, scope, invoice_id)

    return await write(request, ctx, InvoiceAction, work)


@router.post("/v1/invoices/{invoice_id}/void", openapi_extra=request_body(InvoiceAction))
async def void_invoice(invoice_id: str, request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: InvoiceAction) -> dict[str, Any]:
        clock = ctx.services.clock
        row = await service.invoice(conn, scope, invoice_id)
        at = await billing_now(conn, clock, row["test_clock_id"])
        await service.void(conn, scope, clock, invoice_id, at)
        return await service.get(conn, scope, invoice_id)

    return await write(request, ctx, InvoiceAction, work)


@router.post(
    "/v1/invoices/{invoice_id}/mark_uncollectible", openapi_extra=request_body(InvoiceAction)
)
async def mark_invoice_uncollectible(
    invoice_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: InvoiceAction) -> dict[str, Any]:
        clock = ctx.services.clock
        row = await service.invoice(conn, scope, invoice_id)
        at = await billing_now(conn, clock, row["test_clock_id"])
        await service.mark_uncollectible(conn, scope, clock, invoice_id, at)
        return await service.get(conn, scope, invoice_id)

    return await write(request, ctx, InvoiceAction, work)
