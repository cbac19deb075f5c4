"""The declarative base every area's models share."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import DateTime, Dialect, MetaData, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Stable constraint names, so migrations can name what they alter on both databases.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {uuid.UUID: Uuid}


class RandomId:
    """Random (v4) primary keys: ids carry no order that could pair rows with each other."""

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)


class DateTimeUTC(TypeDecorator[datetime]):
    """Aware datetimes, stored in UTC on every database: a naive one is refused when written, and
    one read back without a zone (SQLite keeps none) is UTC. The same column type and conversions
    as advanced-alchemy's DateTimeUTC, which the first migrations were written with; ours because
    importing that package's types loads Litestar, pydantic and attrs, about 0.3 s of the start of
    every command that only needs the models (tick, backup, migrate, keys)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[datetime]:
        return datetime

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise TypeError("a datetime without a time zone cannot be stored: its moment is unknown")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=UTC)


UTCDateTime = DateTimeUTC(timezone=True)
