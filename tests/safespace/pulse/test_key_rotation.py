"""`safespace keys rotate` re-encrypts every comment and retires the old key."""

from __future__ import annotations

import os
import subprocess
import sys

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.privacy.crypto import Keyring, associated_data
from safespace.pulse.models import ReleasedComment
from tests.safespace.pulse.conftest import after_close, answers, open_pulse, post_as, session_cookie


async def test_rotation_reseals_comments(client, db: AsyncSession, engine, settings) -> None:
    pulse = await open_pulse(db, engine, settings, members=10)  # 10: comments are released from 10 answers
    for i in range(10):
        session = await session_cookie(db, f"m{i}@x.org")
        await post_as(client, session, pulse.url, answers(4, comment=f"note {i}"))
    await pulse.tick(after_close(pulse))
    env = {**os.environ, "SAFESPACE_DATA_DIR": settings.data_dir, "SAFESPACE_DATABASE_URL": settings.database_url}
    rotated = Keyring.load(settings.encryption_key_path).current_id + 1  # the key `keys rotate` adds
    result = subprocess.run([sys.executable, "-m", "safespace", "keys", "rotate"], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "re-encrypted 10" in result.stdout
    keyring = Keyring.load(settings.encryption_key_path)
    assert list(keyring.keys) == [rotated]
    texts = set()
    for comment in await db.scalars(select(ReleasedComment)):
        await db.refresh(comment)
        assert keyring.key_id_of(comment.body) == rotated
        texts.add(keyring.open(comment.body, associated_data("released_comment", "body", f"{comment.round_id}/{comment.id}")))
    assert texts == {f"note {i}" for i in range(10)}
