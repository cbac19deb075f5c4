"""The process's logging: one format, and the database drivers kept quiet (P7). Its own module so
that a command sets it up without importing the whole app."""

from __future__ import annotations

import logging

# P7: the database drivers' info and debug logs print SQL and its parameters, which on the answer
# path include the member's id. Alembic lists its autogenerate plugins as it loads them, which a
# command does after this: noise for an operator, and not the one line an operator's mistake gets
# (preflight.explain). All stay at WARNING whatever SAFESPACE_LOG_LEVEL says.
QUIET = ("aiosqlite", "asyncpg", "sqlalchemy", "alembic.runtime.plugins")


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    quiet = max(logging.WARNING, logging.getLevelName(level))
    for name in QUIET:
        logging.getLogger(name).setLevel(quiet)
