"""An emulator of the MoEngage Segments APIs, one module per family.

Cohort Sync (`cohortsync`), v3 filter segments list/get (`segments`) and create/update
(`filter_segments`, grammar in `filters`), v2 archive/unarchive (`segments`), v2 file segments
(`file_segments`, then `file_jobs` and `csv_rules`), the deprecated v1 CSV API (`csv_v1`),
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
