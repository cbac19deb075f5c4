"""P7: answering writes nothing about the person to the logs, even when it fails."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.identity.models import Person
from tests.safespace.pulse.conftest import answers, post_as, session_cookie


async def test_answering_logs_no_member_id_email_or_address(client, db: AsyncSession, pulse, caplog) -> None:
    """With SAFESPACE_LOG_LEVEL=DEBUG, the most a log can say."""
    from safespace.logs import configure_logging

    session = await session_cookie(db, "m0@x.org")
    person = await db.scalar(select(Person).where(Person.email == "m0@x.org"))
    configure_logging("DEBUG")
    caplog.set_level(logging.DEBUG)
    good = await post_as(client, session, pulse.url, answers(5, comment="a private thought"))
    again = await post_as(client, session, pulse.url, answers(5))  # refused: already answered
    bad = await post_as(client, await session_cookie(db, "m1@x.org"), pulse.url, answers(9))
    assert (good.status_code, again.status_code, bad.status_code) == (303, 409, 422)
    logged = "\n".join(record.getMessage() + str(record.exc_info or "") for record in caplog.records)
    for secret in (str(person.id), person.id.hex, "m0@x.org", "m1@x.org", session, "203.0.113.7", "a private thought"):
        assert secret not in logged, f"the log mentions {secret}"
