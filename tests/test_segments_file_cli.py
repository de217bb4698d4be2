"""`segments file ...` and `segments callbacks` end to end against the emulator."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp
import orjson
import pytest

from streamer.cli import main
from streamer.segments.callbacks import CALLBACK_CAP_BYTES, CallbackReceiver
from tests.fixtures.emulator import EmulatorClient
from tests.fixtures.files import FileServer
from tests.fixtures.hostile_api import Answer, MakeHostileApi
from tests.fixtures.segments_cli import SegmentsCli


def file_args(files: FileServer, operation: str, csv: str, *extra: str) -> list[str]:
    args = ["file", operation, "--file-url", files.url(csv), "--attribute-name", "ID",
            "--attribute-type", "string", *extra]  # fmt: skip
    if operation == "create":
        args += ["--expiry-days", "30"]
    return args


def members(emulator: EmulatorClient, segment_id: str) -> set[str]:
    doc = emulator.request("GET", f"/_emulator/segments/{segment_id}/members")[2]
    return set(doc["members"])


def test_wait_returns_each_operations_result(
    segments_cli: SegmentsCli, emulator: EmulatorClient, file_server: FileServer
) -> None:
    file_server.serve("a.csv", b"u1\nu2\n")
    file_server.serve("b.csv", b"u3\n")
    created = segments_cli(*file_args(file_server, "create", "a.csv", "--name", "Files", "--wait"))
    assert created.code == 0, created.err
    assert "creation request accepted" in created.out
    assert "values_found 2, values_processed 2, user_count 2" in created.out
    segment_id = created.out.split("(")[1].split(")")[0]
    assert members(emulator, segment_id) == {"u1", "u2"}

    # --id alone: the tool reads the name back, as the API wants one (§3.1)
    for operation, expected in (("add", {"u1", "u2", "u3"}), ("remove", {"u1", "u2"}),
                                ("replace", {"u3"})):  # fmt: skip
        result = segments_cli(
            *file_args(file_server, operation, "b.csv", "--id", segment_id, "--wait", "--json")
        )
        assert result.code == 0, result.err
        doc = result.json()
        assert doc["accepted"]["cs_id"] == segment_id and doc["result"]["status"] == 201
        assert members(emulator, segment_id) == expected, operation


@pytest.mark.parametrize(
    ("content", "knob", "status", "message"),
    [
        (b"u1\nu1\n", None, 400, "Duplicate value at line 2"),
        (404, None, 400, "File download failed"),
        (b"u1\n", "fail_file_processing", 500, "Internal Server Error"),
    ],
)
def test_wait_reports_a_failed_result_with_exit_1(
    segments_cli: SegmentsCli,
    emulator: EmulatorClient,
    file_server: FileServer,
    content: bytes | int,
    knob: str | None,
    status: int,
    message: str,
) -> None:
    if knob:
        emulator.configure(**{knob: True})
    file_server.serve("x.csv", content)
    result = segments_cli(*file_args(file_server, "create", "x.csv", "--name", "X", "--wait"))
    assert result.code == 1
    assert f"failed ({status})" in result.out and message in result.out


def test_wait_gives_up_after_the_timeout(
    segments_cli: SegmentsCli, file_server: FileServer
) -> None:
    """The result goes to another --callback-url, so the local receiver never sees it."""
    file_server.serve("a.csv", b"u1\n")
    args = file_args(file_server, "create", "a.csv", "--name", "T", "--wait", "--wait-timeout",
                     "0.5", "--callback-url", f"{file_server.base}/elsewhere")  # fmt: skip
    result = segments_cli(*args)
    assert result.code == 1 and "no result for T within 0.5 s" in result.err
    assert file_server.wait_for_callbacks(1)[0]["status"] == 201


def test_file_api_refusals_and_usage(
    segments_cli: SegmentsCli, emulator: EmulatorClient, file_server: FileServer
) -> None:
    file_server.serve("a.csv", b"u1\n")
    assert segments_cli(*file_args(file_server, "create", "a.csv", "--name", "D")).code == 0
    again = segments_cli(*file_args(file_server, "create", "a.csv", "--name", "D"))
    assert again.code == 1 and "409" in again.err and "Name already exists : D" in again.err
    missing = segments_cli(*file_args(file_server, "add", "a.csv", "--name", "Nope"))
    assert missing.code == 1 and "404" in missing.err
    neither = segments_cli(*file_args(file_server, "add", "a.csv"))
    assert neither.code == 2 and "--name or --id" in neither.err
    no_expiry = segments_cli("file", "create", "--name", "E", "--file-url", "http://x/a.csv",
                             "--attribute-name", "ID", "--attribute-type", "string")  # fmt: skip
    assert no_expiry.code == 2 and "--expiry-days" in no_expiry.err
    for _ in range(8):  # 2 used above (create, and the 409 counts: it was admitted)
        segments_cli(*file_args(file_server, "add", "a.csv", "--name", "D"))
    limited = segments_cli(*file_args(file_server, "add", "a.csv", "--name", "D"))
    assert limited.code == 1 and "429" in limited.err and "10 per hour" in limited.err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    return {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith("cohort_streamer_segment_callbacks_total")
    }


def test_the_callbacks_server_logs_and_counts_results_by_status(
    segments_cli: SegmentsCli, file_server: FileServer
) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamer.cli", "segments", "callbacks", "--port", str(port),
         "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                scrape(f"{base}/metrics")
                break
            except OSError:
                assert time.monotonic() < deadline, "the callbacks server did not start"
                time.sleep(0.1)
        file_server.serve("good.csv", b"u1\nu2\n")
        file_server.serve("bad.csv", b"u1,\n")
        for name, csv in (("Good", "good.csv"), ("Bad", "bad.csv")):
            args = file_args(file_server, "create", csv, "--name", name,
                             "--callback-url", f"{base}/moengage")  # fmt: skip
            assert segments_cli(*args).code == 0
        stranger = urllib.request.Request(f"{base}/x", data=b"not json", method="POST")
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(stranger, timeout=5)
        expected = {
            'cohort_streamer_segment_callbacks_total{status="201"}': 1.0,
            'cohort_streamer_segment_callbacks_total{status="400"}': 1.0,
            'cohort_streamer_segment_callbacks_total{status="invalid"}': 1.0,
        }
        while scrape(f"{base}/metrics") != expected:
            assert time.monotonic() < deadline, scrape(f"{base}/metrics")
            time.sleep(0.05)
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=20)
    assert server.returncode == 0, err
    logged = [orjson.loads(line) for line in out.splitlines()]
    assert {(r["segment_name"], r["status"]) for r in logged} == {("Good", 201), ("Bad", 400)}
    assert "Traceback" not in err


# --- a hostile world: the new commands share the client's rules ---------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.parametrize("command", ["create", "file", "apply"])
def test_redirects_are_refused_by_every_writing_command(
    segments_cli: SegmentsCli,
    emulator: EmulatorClient,
    hostile_api: MakeHostileApi,
    file_server: FileServer,
    tmp_path: Path,
    status: int,
    command: str,
) -> None:
    elsewhere = hostile_api()
    api = hostile_api(upstream=emulator.url)
    api.answer(Answer(status, {"Location": f"{elsewhere.url}/landing"}))
    segments_cli.use_host(api.url)
    definition = tmp_path / "d.yaml"
    definition.write_text("filter_operator: and\nfilters: []\n")
    manifest = tmp_path / "s.yaml"
    manifest.write_text("segments: []\n")
    args = {
        "create": ["create", "-f", str(definition), "--name", "x"],
        "file": file_args(file_server, "create", "a.csv", "--name", "x", "--wait"),
        "apply": ["apply", "-f", str(manifest)],
    }[command]
    result = segments_cli(*args)
    assert result.code == 1 and "redirects are never followed" in result.err
    assert elsewhere.received == [], "the credentials left the configured origin"
    assert emulator.api_key not in result.out + result.err


def test_the_receiver_counts_hostile_posts_without_growing(file_server: FileServer) -> None:
    """Oversized, malformed and made-up results are answered and counted, never kept whole."""

    async def scenario() -> dict[str, float]:
        receiver = CallbackReceiver(echo=False)
        port = await receiver.start("127.0.0.1", 0)
        try:
            async with aiohttp.ClientSession() as session:
                posts = [b"x" * (CALLBACK_CAP_BYTES + 1), b"[1]", b'{"status": 777}',
                         b'{"status": 201, "segment_name": "s"}']  # fmt: skip
                for data in posts:
                    async with session.post(f"http://127.0.0.1:{port}/", data=data) as resp:
                        await resp.read()
        finally:
            await receiver.stop()
        assert len(receiver.results) == 2
        return {
            sample.labels["status"]: sample.value
            for metric in receiver.registry.collect()
            for sample in metric.samples
            if sample.name.endswith("_total")
        }

    assert asyncio.run(scenario()) == {"invalid": 2.0, "other": 1.0, "201": 1.0}


def test_callbacks_on_a_busy_port_and_commands_without_config_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["segments", "callbacks", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err
    assert main(["segments", "list"]) == 2
    assert "--config is required" in capsys.readouterr().err
