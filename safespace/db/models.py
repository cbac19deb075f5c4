"""Every area's models, imported in one place so Alembic and tests see the whole schema."""

from safespace import ratelimit  # noqa: F401 - its rate_counter table
from safespace.audit import models as audit_models  # noqa: F401
from safespace.chat import models as chat_models  # noqa: F401
from safespace.checkin import models as checkin_models  # noqa: F401
from safespace.db.base import Base
from safespace.identity import models as identity_models  # noqa: F401
from safespace.insights import models as insights_models  # noqa: F401
from safespace.notifications import models as notifications_models  # noqa: F401
from safespace.pulse import models as pulse_models  # noqa: F401
from safespace.stories import models as stories_models  # noqa: F401
from safespace.webhooks import models as webhooks_models  # noqa: F401

metadata = Base.metadata
