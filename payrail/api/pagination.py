"""Stripe's cursor pagination: newest first, `limit`, `starting_after`, `ending_before`."""

from __future__ import annotations

from typing import Annotated, Any

from psycopg import AsyncConnection, sql
from pydantic import Field

from payrail.api.schemas import Params
from payrail.errors import InvalidRequest
from payrail.tenants.scope import Scope


class ListParams(Params):
    limit: Annotated[int, Field(ge=1, le=100)] = 10
    starting_after: str | None = None
    ending_before: str | None = None
    # Accepted so that Stripe SDK calls sending expand[] work; nothing expands yet.
    expand: list[str] = []


def list_object(url: str, data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {"object": "list", "url": url, "has_more": has_more, "data": data}


async def page_ids(
    conn: AsyncConnection[Any],
    table: str,
    scope: Scope,
    params: ListParams,
    filters: list[tuple[sql.Composable, Any]] | None = None,
    *,
    condition: sql.Composable | None = None,
) -> tuple[list[str], bool]:
    """Ids of one page, and whether more lie beyond it in the direction of travel.
    `filters` are clauses with one parameter each; `condition`, one with none."""
    if params.starting_after and params.ending_before:
        raise InvalidRequest(
            "You may only specify one of starting_after and ending_before.",
            param="ending_before",
        )
    name = sql.Identifier(table)
    where: list[sql.Composable] = [sql.SQL("merchant_id = %s AND livemode = %s")]
    args: list[Any] = [scope.merchant_id, scope.livemode]
    for clause, value in filters or []:
        where.append(clause)
        args.append(value)
    if condition is not None:
        where.append(condition)
    cursor_param, cursor = (
        ("starting_after", params.starting_after)
        if params.starting_after
        else ("ending_before", params.ending_before)
    )
    ascending = bool(params.ending_before)
    if cursor:
        found = await (
            await conn.execute(
                sql.SQL(
                    "SELECT seq FROM {} WHERE id = %s AND merchant_id = %s AND livemode = %s"
                ).format(name),
                (cursor, scope.merchant_id, scope.livemode),
            )
        ).fetchone()
        if found is None:
            raise InvalidRequest(
                f"No such object: '{cursor}'", param=cursor_param, code="resource_missing"
            )
        where.append(sql.SQL("seq > %s") if ascending else sql.SQL("seq < %s"))
        args.append(found[0])
    query = sql.SQL("SELECT id FROM {} WHERE {} ORDER BY seq {} LIMIT %s").format(
        name, sql.SQL(" AND ").join(where), sql.SQL("ASC" if ascending else "DESC")
    )
    rows = await (await conn.execute(query, [*args, params.limit + 1])).fetchall()
    ids = [row[0] for row in rows[: params.limit]]
    if ascending:
        ids.reverse()
    return ids, len(rows) > params.limit
