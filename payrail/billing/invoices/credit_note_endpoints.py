"""/v1/credit_notes: issue, read, list and void them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from psycopg import sql

from payrail.api.auth import require_key
from payrail.api.context import RequestContext
from payrail.api.http import Conn, read, request_body, write, write_steps
from payrail.api.idempotency import Recovery
from payrail.api.pagination import list_object, page_ids
from payrail.billing import repository as repo
from payrail.billing.invoices import credit_notes as service
from payrail.billing.invoices.credit_note_schemas import (
    CreditNoteCreate,
    CreditNoteListParams,
    CreditNoteVoid,
)
from payrail.payments.schemas import RetrieveParams
from payrail.tenants.scope import Scope

router = APIRouter(tags=["credit_notes"])
Ctx = Depends(require_key)


@router.post("/v1/credit_notes", openapi_extra=request_body(CreditNoteCreate))
async def create_credit_note(request: Request, ctx: RequestContext = Ctx) -> Response:
    """Steps: a refund_amount is sent to the provider after the credit note commits."""

    async def work(
        connect: Callable[[], Any], scope: Scope, params: CreditNoteCreate, recovery: Recovery
    ) -> dict[str, Any]:
        return await service.create(connect, scope, ctx.services, params, recovery)

    return await write_steps(request, ctx, CreditNoteCreate, work)


@router.get("/v1/credit_notes")
async def list_credit_notes(request: Request, ctx: RequestContext = Ctx) -> Response:
    async def work(conn: Conn, scope: Scope, params: CreditNoteListParams) -> dict[str, Any]:
        filters: list[tuple[sql.Composable, Any]] = []
        if params.invoice:
            filters.append((sql.SQL("invoice_id = %s"), params.invoice))
        if params.customer:
            filters.append((sql.SQL("customer_id = %s"), params.customer))
        ids, more = await page_ids(conn, "credit_notes", scope, params, filters)
        rows = await repo.fetch(conn, "credit_notes", scope, ids)
        return list_object(request.url.path, await service.render(conn, scope, rows), more)

    return await read(request, ctx, CreditNoteListParams, work)


@router.get("/v1/credit_notes/{credit_note_id}")
async def get_credit_note(
    credit_note_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: RetrieveParams) -> dict[str, Any]:
        return await service.get(conn, scope, credit_note_id)

    return await read(request, ctx, RetrieveParams, work)


@router.post("/v1/credit_notes/{credit_note_id}/void", openapi_extra=request_body(CreditNoteVoid))
async def void_credit_note(
    credit_note_id: str, request: Request, ctx: RequestContext = Ctx
) -> Response:
    async def work(conn: Conn, scope: Scope, params: CreditNoteVoid) -> dict[str, Any]:
        await service.void(conn, scope, ctx.services.clock, credit_note_id)
        return await service.get(conn, scope, credit_note_id)

    return await write(request, ctx, CreditNoteVoid, work)
