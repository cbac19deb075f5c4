"""The process's logging: one format, and the database drivers kept quiet (P7). Its own module so
that a command sets it up without importing the whole app."""

from __future__ import annotations

import logging


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # P7: these libraries' info and debug logs print SQL and its parameters, which on the answer
    # path include the member's id. They stay at WARNING whatever SAFESPACE_LOG_LEVEL says.
    for name in ("aiosqlite", "asyncpg", "sqlalchemy"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    # Alembic lists its autogenerate plugins as it loads them, which a command does after this:
    # noise for an operator, and not the one line an operator's mistake gets (preflight.explain).
    logging.getLogger("alembic.runtime.plugins").setLevel(max(logging.WARNING, logging.getLevelName(level)))
