"""An emulator of the MoEngage Segments API parts cohort-streamer uses.

Cohort Sync (`POST /v1/integrations/cohortsync`), v3 segment list/get, v2 archive/unarchive,
plus `/_emulator/` inspection and control endpoints. Strict about auth, headers, body schema,
size and rate limits; knobs for latency and seeded fault injection. See `cohortsync` for the
order of checks and `admin` for the inspection API.
"""

from .config import EmulatorConfig, Knobs
from .context import EmulatorContext
from .server import EmulatorHandle, EmulatorThread, start_emulator

__all__ = [
    "EmulatorConfig",
    "EmulatorContext",
    "EmulatorHandle",
    "EmulatorThread",
    "Knobs",
    "start_emulator",
]
