"""The wall clock set back under a running server (NTP's first correction, `date -s`, a
virtual machine restored from a snapshot): for real, but for the server's processes only,
through libfaketime. No timer of the server may wait for the clock to catch up."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.test_durability import Client
from tests.servers import BIN
from tests.support import wait_until

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
AN_HOUR = 3600


@pytest.fixture
def wall_clock(tmp_path):
    """(variables, step): processes started with these environment variables read the time
    of day through libfaketime, which step("-1h") sets an hour back; their monotonic clock
    stays real."""
    if not LIBFAKETIME.exists():
        pytest.skip(f"libfaketime is not installed ({LIBFAKETIME}: Debian's faketime package)")
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    variables = {
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME_TIMESTAMP_FILE": str(offset),
        "FAKETIME_NO_CACHE": "1",  # read the file at every call: the step shows at once
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    return variables, lambda text: offset.write_text(f"{text}\n")


def test_a_wall_clock_set_back_an_hour_stalls_no_timer(server_runner, wall_clock, tmp_path):
    variables, step = wall_clock
    server = server_runner.run(env={**os.environ, **variables})
    client = Client(server)
    marker = tmp_path / "runs"
    client(f"START --restart always -- sh -c 'echo run >> {marker}; exit 3'")
    wait_until(lambda: marker.exists() and marker.read_text().count("run") >= 2)
    step("-1h")
    runs = marker.read_text().count("run")
    wait_until(lambda: marker.read_text().count("run") > runs, timeout=20)  # restarts go on

    stubborn = client("START -- sh -c 'trap \"\" TERM; sleep 60'")["pid"]
    table = client("LIST --managed")
    assert stubborn in [row["pid"] for row in table["processes"]], "refreshed, not an hour old"
    assert abs(time.time() - AN_HOUR - table["sampled"]) < 60, "read at the server's time of day"
    asked = time.monotonic()
    stopped = client(f"STOP {stubborn} 1")
    assert (stopped["ok"], stopped["signal"]) == (True, "SIGKILL"), stopped
    assert time.monotonic() - asked < 10, "STOP's SIGKILL came after its grace"

    [last] = client("HISTORY 1")["history"]
    assert last["command"] == f"STOP {stubborn} 1"
    assert abs(time.time() - AN_HOUR - last["time"]) < 60, "records say the server's time of day"


def test_rpm_tui_reconnects_with_its_wall_clock_set_back_an_hour(
    server_runner, terminal, wall_clock
):
    variables, step = wall_clock
    server = server_runner.run()
    tui = terminal(
        f"127.0.0.1:{server.port}", "--token-file", str(server.state_dir / "token"), env=variables
    )
    tui.wait_for("connected")
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)
    tui.wait_for("disconnected")
    step("-1h")  # while it waits to try again
    server_runner.run(port=server.port, state_dir=server.state_dir)
    tui.wait_for(lambda text: "connected" in text and "disconnected" not in text, timeout=15)


def test_rpmctl_gives_up_on_a_silent_server_with_its_wall_clock_set_back(wall_clock):
    variables, step = wall_clock
    environment = {"PATH": os.environ["PATH"], "HOME": "/nonexistent", **variables}
    with socket.create_server(("127.0.0.1", 0)) as silent:  # greets, then never answers
        silent.settimeout(15)
        command = [str(BIN / "rpmctl"), "-H", f"127.0.0.1:{silent.getsockname()[1]}", "ping"]
        with subprocess.Popen(command, env=environment, stderr=subprocess.PIPE, text=True) as ctl:
            try:
                connection, _ = silent.accept()
                connection.sendall(b"OK rpm 1.0.0 ready\r\n")
                connection.settimeout(15)
                assert connection.recv(100).startswith(b"MODE json"), "its timer is set now"
                step("-1h")
                _, errors = ctl.communicate(timeout=30)
                connection.close()
            finally:
                ctl.kill()
    assert ctl.returncode == 3 and "no answer within 10 s" in errors, errors
