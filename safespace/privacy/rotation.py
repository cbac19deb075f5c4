"""Re-encrypt every sealed value with the keyring's current key (`safespace keys rotate`)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.chat.models import ChatChannel
from safespace.privacy.crypto import Keyring, associated_data
from safespace.privacy.round_keys import is_sealed
from safespace.pulse.models import PendingComment, ReleasedComment, RoundKey
from safespace.stories.models import Reply, Story, StoryKey
from safespace.webhooks.models import WebhookEndpoint

# Each sealed column, with how its associated data is built from the row.
SEALED = [
    (PendingComment, "pending_comment", "body", lambda row: f"{row.round_id}/{row.id}"),
    (ReleasedComment, "released_comment", "body", lambda row: f"{row.round_id}/{row.id}"),
    (Story, "story", "body", lambda row: row.id),
    (Reply, "reply", "body", lambda row: row.id),
    (RoundKey, "round_key", "private_sealed", lambda row: row.id),
    (StoryKey, "story_key", "private_sealed", lambda row: row.id),
    (ChatChannel, "chat_channel", "url_sealed", lambda row: row.community_id),
    (WebhookEndpoint, "webhook_endpoint", "secret_sealed", lambda row: row.id),
]


async def reseal_all(db: AsyncSession, keyring: Keyring) -> int:
    """Re-seal what is not under the current key yet; one transaction (the caller commits)."""
    count = 0
    for model, table, column, row_ref in SEALED:
        for row in await db.scalars(select(model)):
            sealed = getattr(row, column)
            if is_sealed(sealed) or keyring.key_id_of(sealed) == keyring.current_id:
                continue  # an open round's pending comment is under its round key, not the keyring
            aad = associated_data(table, column, row_ref(row))
            setattr(row, column, keyring.seal(keyring.open(sealed, aad), aad))
            count += 1
    await db.flush()
    return count


async def count_not_current(db: AsyncSession, keyring: Keyring) -> int:
    """Sealed values still under an older key (must be 0 before older keys are retired)."""
    count = 0
    for model, _table, column, _row_ref in SEALED:
        for sealed in await db.scalars(select(getattr(model, column))):
            count += not is_sealed(sealed) and keyring.key_id_of(sealed) != keyring.current_id
    return count
