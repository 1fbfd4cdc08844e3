"""The capture modes this hub ships, and the lookup of a source's mode by name.

Importing a mode's module registers it (``@register_mode``): adding a mode is its module
plus one import line here (and its name in ``hub.config.CAPTURE_MODES``, which the config
file is validated against).
"""

from __future__ import annotations

import connectors.debezium.capture  # noqa: F401 - registers "debezium"
import connectors.logical.capture  # noqa: F401 - registers "logical"
import connectors.poll  # noqa: F401 - registers "poll"
import connectors.snapshot  # noqa: F401 - registers "snapshot"
from connectors.base import CaptureMode, ConnectorContext, registered_mode
from hub.config import SourceConfig


def mode_class(source: SourceConfig) -> type[CaptureMode]:
    """The capture mode the source's ``capture:`` names."""
    return registered_mode(source.capture)


def mode_for(ctx: ConnectorContext) -> CaptureMode:
    """A new instance of the capture mode the context's source names."""
    return mode_class(ctx.source)(ctx)
