"""The catalog, as Stripe keeps it: products (the tiers sold) and their prices.

A price's terms — amount, currency, interval, product — never change: a change is a new
price, and subscribers keep the price they have until they are moved to another. Once a
subscription or an invoice line has used a price, PostgreSQL enforces that too
(migration 0014). What may change on a price is how it is found and shown: `active`,
`nickname`, `lookup_key`, `metadata`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from payrail.api.schemas import merge_metadata
from payrail.billing.catalog import repository as repo
from payrail.billing.catalog.schemas import (
    PriceCreate,
    PriceDataRecurring,
    PriceUpdate,
    ProductCreate,
    ProductUpdate,
    Recurring,
)
from payrail.clock import Clock, unix
from payrail.errors import InvalidRequest, NotFound
from payrail.events.outbox import OutboxEvent, emit
from payrail.ids import new_id
from payrail.tenants.scope import Scope

Conn = repo.Conn
Event = tuple[str, dict[str, Any]]


# --- Objects --------------------------------------------------------------------------------------


def product_object(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "product",
        "active": row["active"],
        "created": unix(row["created_at"]),
        "default_price": row["default_price_id"],
        "description": row["description"],
        "images": [],
        "livemode": row["livemode"],
        "marketing_features": [],
        "metadata": row["metadata"],
        "name": row["name"],
        "package_dimensions": None,
        "shippable": None,
        "statement_descriptor": None,
        "tax_code": None,
        "type": "service",
        "unit_label": None,
        "updated": unix(row["updated_at"]),
        "url": None,
    }


def price_object(row: dict[str, Any]) -> dict[str, Any]:
    recurring = None
    if row["type"] == "recurring":
        recurring = {
            "aggregate_usage": None,
            "interval": row["recurring_interval"],
            "interval_count": row["recurring_interval_count"],
            "meter": None,
            "trial_period_days": row["trial_period_days"],
            "usage_type": "licensed",
        }
    return {
        "id": row["id"],
        "object": "price",
        "active": row["active"],
        "billing_scheme": "per_unit",
        "created": unix(row["created_at"]),
        "currency": row["currency"].lower(),
        "custom_unit_amount": None,
        "livemode": row["livemode"],
        "lookup_key": row["lookup_key"],
        "metadata": row["metadata"],
        "nickname": row["nickname"],
        "product": row["product_id"],
        "recurring": recurring,
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": row["type"],
        "unit_amount": row["unit_amount"],
        "unit_amount_decimal": str(row["unit_amount"]),
    }


# --- Decisions ------------------------------------------------------------------------------------


def unit_amount_of(
    unit_amount: int | None, unit_amount_decimal: int | None, *, at: str = ""
) -> int:
    """The price's amount from Stripe's two ways of giving it: exactly one is required.
    `at` is where the parameters sit ("default_price_data"), for the error's `param`."""

    def name(field: str) -> str:
        return f"{at}[{field}]" if at else field

    if unit_amount is not None and unit_amount_decimal is not None:
        raise InvalidRequest(
            "You may only specify one of these parameters: unit_amount, unit_amount_decimal.",
            param=name("unit_amount_decimal"),
        )
    amount = unit_amount if unit_amount is not None else unit_amount_decimal
    if amount is None:
        param = name("unit_amount")
        raise InvalidRequest(
            f"Missing required param: {param}.", param=param, code="parameter_missing"
        )
    return amount


def check_product_source(product: str | None, product_data: object | None) -> None:
    """A new price names its product, or describes one to make: one of the two."""
    if product is not None and product_data is not None:
        raise InvalidRequest(
            "You may only specify one of these parameters: product, product_data.",
            param="product_data",
        )
    if product is None and product_data is None:
        raise InvalidRequest(
            "Missing required param: product.", param="product", code="parameter_missing"
        )


def check_archivable(price_id: str, default_price_id: str | None) -> None:
    if default_price_id == price_id:
        raise InvalidRequest(
            "This price cannot be archived because it is the default price of its product."
            " Set another default price (or default_price='') on the product first.",
            param="active",
        )


def changed(row: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """The changes that change something: an update that changes nothing emits nothing."""
    return {k: v for k, v in changes.items() if row[k] != v}


# --- Products -------------------------------------------------------------------------------------


async def _emit(conn: Conn, scope: Scope, clock: Clock, events: Sequence[Event]) -> None:
    await emit(
        conn,
        scope,
        clock.now(),
        [OutboxEvent(kind, obj["object"], obj["id"], obj) for kind, obj in events],
    )


async def _product_row(conn: Conn, scope: Scope, product_id: str) -> dict[str, Any]:
    rows = await repo.fetch_products(conn, scope, [product_id])
    return rows[0]


async def _price_row(conn: Conn, scope: Scope, price_id: str) -> dict[str, Any]:
    rows = await repo.fetch_prices(conn, scope, [price_id])
    return rows[0]


async def _new_product(
    conn: Conn,
    scope: Scope,
    clock: Clock,
    *,
    name: str,
    description: str | None,
    active: bool,
    metadata: dict[str, str],
    default_price_id: str | None,
) -> dict[str, Any]:
    product_id = new_id("prod")
    await repo.insert_product(
        conn,
        scope,
        {
            "id": product_id,
            "name": name,
            "description": description,
            "active": active,
            "default_price_id": default_price_id,
            "metadata": metadata,
            "created_at": clock.now(),
        },
    )
    return product_object(await _product_row(conn, scope, product_id))


async def create_product(
    conn: Conn, scope: Scope, clock: Clock, params: ProductCreate
) -> dict[str, Any]:
    data = params.default_price_data
    if data is None:
        product = await _new_product(
            conn,
            scope,
            clock,
            name=params.name,
            description=params.description or None,
            active=params.active,
            metadata=params.metadata,
            default_price_id=None,
        )
        await _emit(conn, scope, clock, [("product.created", product)])
        return product
    amount = unit_amount_of(data.unit_amount, data.unit_amount_decimal, at="default_price_data")
    # The product names its default price before that price exists: the foreign key is
    # checked at commit.
    price_id = new_id("price")
    product = await _new_product(
        conn,
        scope,
        clock,
        name=params.name,
        description=params.description or None,
        active=params.active,
        metadata=params.metadata,
        default_price_id=price_id,
    )
    await _insert_price(
        conn,
        scope,
        clock,
        price_id=price_id,
        product_id=product["id"],
        currency=data.currency,
        unit_amount=amount,
        recurring=data.recurring,
        active=True,
        nickname=None,
        lookup_key=None,
        metadata={},
    )
    price = price_object(await _price_row(conn, scope, price_id))
    await _emit(conn, scope, clock, [("product.created", product), ("price.created", price)])
    return product


async def get_product(conn: Conn, scope: Scope, product_id: str) -> dict[str, Any]:
    rows = await repo.fetch_products(conn, scope, [product_id])
    if not rows:
        raise NotFound("product", product_id)
    return product_object(rows[0])


async def list_products(conn: Conn, scope: Scope, ids: Sequence[str]) -> list[dict[str, Any]]:
    return [product_object(row) for row in await repo.fetch_products(conn, scope, ids)]


async def _default_price(conn: Conn, scope: Scope, product_id: str, price_id: str) -> str | None:
    """The price a product's `default_price` may be set to: one of its own, active."""
    if price_id == "":
        return None  # "" unsets, as in Stripe
    param = "default_price"
    # Locked, so that archiving it cannot cross this update (see update_price).
    rows = await repo.fetch_prices(conn, scope, [price_id], lock="update")
    if not rows:
        raise NotFound("price", price_id, param=param)
    if rows[0]["product_id"] != product_id:
        raise InvalidRequest(
            f"The price `{price_id}` belongs to another product: a product's default price"
            " must be one of its own prices.",
            param=param,
        )
    if not rows[0]["active"]:
        raise InvalidRequest(
            f"The price `{price_id}` is archived: a default price must be active.", param=param
        )
    return price_id


async def update_product(
    conn: Conn, scope: Scope, clock: Clock, product_id: str, params: ProductUpdate
) -> dict[str, Any]:
    rows = await repo.fetch_products(conn, scope, [product_id], lock="update")
    if not rows:
        raise NotFound("product", product_id)
    row = rows[0]
    changes: dict[str, Any] = {}
    if params.name is not None:
        changes["name"] = params.name
    if params.description is not None:
        changes["description"] = params.description or None
    if params.active is not None:
        changes["active"] = params.active
    if params.metadata is not None:
        changes["metadata"] = merge_metadata(row["metadata"], params.metadata)
    if params.default_price is not None:
        changes["default_price_id"] = await _default_price(
            conn, scope, product_id, params.default_price
        )
    changes = changed(row, changes)
    if not changes:
        return product_object(row)
    await repo.update_product(conn, product_id, changes, clock.now())
    obj = product_object(await _product_row(conn, scope, product_id))
    await _emit(conn, scope, clock, [("product.updated", obj)])
    return obj


async def delete_product(conn: Conn, scope: Scope, clock: Clock, product_id: str) -> dict[str, Any]:
    # Locked: a price being made for it waits, then finds it gone.
    if not await repo.fetch_products(conn, scope, [product_id], lock="update"):
        raise NotFound("product", product_id)
    if await repo.product_has_prices(conn, product_id):
        raise InvalidRequest(
            "This product cannot be deleted because it has one or more user-created prices."
            " Archive it instead (active=false).",
            param="id",
        )
    await repo.delete_product(conn, product_id)
    obj = {"id": product_id, "object": "product", "deleted": True}
    await _emit(conn, scope, clock, [("product.deleted", obj)])
    return obj


# --- Prices ---------------------------------------------------------------------------------------


async def _insert_price(
    conn: Conn,
    scope: Scope,
    clock: Clock,
    *,
    price_id: str,
    product_id: str,
    currency: str,
    unit_amount: int,
    recurring: PriceDataRecurring | None,
    active: bool,
    nickname: str | None,
    lookup_key: str | None,
    metadata: dict[str, str],
) -> None:
    await repo.insert_price(
        conn,
        scope,
        {
            "id": price_id,
            "product_id": product_id,
            "type": "one_time" if recurring is None else "recurring",
            "currency": currency,
            "unit_amount": unit_amount,
            "recurring_interval": None if recurring is None else recurring.interval,
            "recurring_interval_count": None if recurring is None else recurring.interval_count,
            "trial_period_days": (
                recurring.trial_period_days if isinstance(recurring, Recurring) else None
            ),
            "active": active,
            "nickname": nickname,
            "lookup_key": lookup_key,
            "metadata": metadata,
            "created_at": clock.now(),
        },
    )


async def _take_lookup_key(
    conn: Conn, scope: Scope, lookup_key: str, *, transfer: bool, taker: str
) -> list[Event]:
    """Make `lookup_key` free for price `taker`: with `transfer`, take it from the price
    holding it (whose price.updated is returned); without, a held key is refused."""
    await repo.lock_lookup_key(conn, scope, lookup_key)
    holder = await repo.lookup_key_holder(conn, scope, lookup_key)
    if holder is None or holder == taker:
        return []
    if not transfer:
        raise InvalidRequest(
            f"A price (`{holder}`) already uses that lookup key. Pass transfer_lookup_key=true"
            " to move it to this price.",
            param="lookup_key",
        )
    await repo.update_price(conn, holder, {"lookup_key": None})
    return [("price.updated", price_object(await _price_row(conn, scope, holder)))]


async def create_price(
    conn: Conn, scope: Scope, clock: Clock, params: PriceCreate
) -> dict[str, Any]:
    amount = unit_amount_of(params.unit_amount, params.unit_amount_decimal)
    check_product_source(params.product, params.product_data)
    events: list[Event] = []
    if params.product_data is not None:
        data = params.product_data
        product = await _new_product(
            conn,
            scope,
            clock,
            name=data.name,
            description=None,
            active=data.active,
            metadata=data.metadata,
            default_price_id=None,
        )
        product_id = product["id"]
        events.append(("product.created", product))
    else:
        assert params.product is not None
        product_id = params.product
        # Key-share locked, so that the product cannot be deleted under its new price.
        if not await repo.fetch_products(conn, scope, [product_id], lock="key share"):
            raise NotFound("product", product_id, param="product")
    price_id = new_id("price")
    if params.lookup_key is not None:
        events += await _take_lookup_key(
            conn, scope, params.lookup_key, transfer=params.transfer_lookup_key, taker=price_id
        )
    await _insert_price(
        conn,
        scope,
        clock,
        price_id=price_id,
        product_id=product_id,
        currency=params.currency,
        unit_amount=amount,
        recurring=params.recurring,
        active=params.active,
        nickname=params.nickname,
        lookup_key=params.lookup_key,
        metadata=params.metadata,
    )
    obj = price_object(await _price_row(conn, scope, price_id))
    await _emit(conn, scope, clock, [*events, ("price.created", obj)])
    return obj


async def get_price(conn: Conn, scope: Scope, price_id: str) -> dict[str, Any]:
    rows = await repo.fetch_prices(conn, scope, [price_id])
    if not rows:
        raise NotFound("price", price_id)
    return price_object(rows[0])


async def list_prices(conn: Conn, scope: Scope, ids: Sequence[str]) -> list[dict[str, Any]]:
    return [price_object(row) for row in await repo.fetch_prices(conn, scope, ids)]


async def update_price(
    conn: Conn, scope: Scope, clock: Clock, price_id: str, params: PriceUpdate
) -> dict[str, Any]:
    rows = await repo.fetch_prices(conn, scope, [price_id], lock="update")
    if not rows:
        raise NotFound("price", price_id)
    row = rows[0]
    changes: dict[str, Any] = {}
    if params.active is not None:
        if not params.active:
            product = await _product_row(conn, scope, row["product_id"])
            check_archivable(price_id, product["default_price_id"])
        changes["active"] = params.active
    if params.nickname is not None:
        changes["nickname"] = params.nickname or None
    events: list[Event] = []
    if params.lookup_key is not None:
        if params.lookup_key:
            events += await _take_lookup_key(
                conn, scope, params.lookup_key, transfer=params.transfer_lookup_key, taker=price_id
            )
        changes["lookup_key"] = params.lookup_key or None
    if params.metadata is not None:
        changes["metadata"] = merge_metadata(row["metadata"], params.metadata)
    changes = changed(row, changes)
    if not changes:
        return price_object(row)
    await repo.update_price(conn, price_id, changes)
    obj = price_object(await _price_row(conn, scope, price_id))
    await _emit(conn, scope, clock, [*events, ("price.updated", obj)])
    return obj


# --- For subscriptions and invoices ---------------------------------------------------------------


async def fetch_prices(conn: Conn, scope: Scope, price_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Price rows (as `price_object` takes them, with `product_active`) of this merchant
    and mode, in the order asked; unknown ids are left out."""
    return await repo.fetch_prices(conn, scope, price_ids)


async def recurring_price(conn: Conn, scope: Scope, price_id: str, *, param: str) -> dict[str, Any]:
    """The price row a subscription item may be put on: this merchant's, active,
    recurring, of an active product. Errors name `param` (e.g. "items[0][price]")."""
    rows = await repo.fetch_prices(conn, scope, [price_id])
    if not rows:
        raise NotFound("price", price_id, param=param)
    row = rows[0]
    if not row["active"]:
        raise InvalidRequest(
            f"The price `{price_id}` is archived (active=false): only active prices can be"
            " subscribed to.",
            param=param,
        )
    if row["type"] != "recurring":
        raise InvalidRequest(
            f"The price `{price_id}` is set to `type={row['type']}` but this field only"
            " accepts prices with `type=recurring`.",
            param=param,
        )
    if not row["product_active"]:
        raise InvalidRequest(
            f"The price `{price_id}` belongs to product `{row['product_id']}`, which is"
            " archived (active=false): its prices cannot be subscribed to.",
            param=param,
        )
    return row


async def mark_used(conn: Conn, price_ids: Sequence[str]) -> None:
    """Record that subscriptions or invoice lines refer to these prices: from then on
    PostgreSQL refuses any change to their terms. Call in the transaction that makes the
    reference."""
    await repo.mark_used(conn, price_ids)
