"""SIGHUP is handled deliberately (issue 13): it re-reads the credentials, never kills.

Without a handler SIGHUP's default action ends the process at once: nothing flushed, nothing
committed, a crash loop for whoever sends it (a closing terminal, a `kill -HUP` after
rotating a Secret).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from streamer.dev.sample import generate
from tests.fixtures.observe import wait_for
from tests.fixtures.streamer import StreamerRig


def _log_lines(path: Path, text: str) -> int:
    return sum(1 for line in path.read_text(errors="replace").splitlines() if text in line)


def test_sighup_rereads_the_credentials_and_keeps_running(rig: StreamerRig, tmp_path: Path) -> None:
    key_file = tmp_path / "api-key"
    key_file.write_text(rig.emulator.api_key + "\n")
    first = generate(events=1_000, cohorts=3, users=300, seed=31)
    rig.produce(first.messages)
    # auth retries are slow: only SIGHUP can make the rotated key take effect this soon
    proc = rig.start(api_key_file=key_file, moengage={"auth_retry_seconds": 600})
    rig.wait_caught_up(timeout=60)

    # rotate to a revoked key and signal: the next requests carry it (401), the process lives
    key_file.write_text("revoked-key-0000\n")
    proc.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    wait_for(lambda: _log_lines(proc.log_file, "SIGHUP: credentials re-read") == 1, 10, "reload")
    second = generate(events=200, cohorts=3, users=300, seed=32)
    rig.produce(second.messages)
    wait_for(lambda: rig.emulator.stats()["by_status"].get("401", 0) >= 1, 20, "a 401")
    assert proc.alive()

    # an unreadable key file: the previous credentials stay, the process lives
    key_file.unlink()
    proc.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    wait_for(lambda: _log_lines(proc.log_file, "cannot re-read credentials") == 1, 10, "error")
    time.sleep(0.5)
    assert proc.alive()
    output = proc.log_file.read_text()
    assert "revoked-key-0000" not in output and rig.emulator.api_key not in output
    assert "Traceback" not in output
    assert proc.terminate() == 0
