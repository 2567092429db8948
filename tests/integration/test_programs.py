"""The programs file with a real `twistd rpm`: programs started by name at start, RELOAD and
SIGHUP applying changes, a bad file refused whole, a reboot, limits and stop signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.integration.test_durability import Client, kill9
from tests.servers import BIN
from tests.support import pid_alive, wait_until

PROGRAMS = """
[programs.web]
command = "sleep 301"
restart = "always"

[programs.worker]
argv = ["sh", "-c", "exec sleep 302"]
restart = "on-failure"
limits = { nofile = 123 }

[programs.idle]
command = "sleep 303"
autostart = false
"""


def open_files_limit(pid: int) -> str:
    """The soft `Max open files` of a process, as /proc shows it."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return line.split()[3]
    return ""


def programs(client) -> dict[str, int]:
    """Running named programs: name -> pid."""
    rows = client("LIST --managed")["processes"]
    return {row["program"]: row["pid"] for row in rows if row["program"]}


def serve(server_runner, tmp_path, text: str = PROGRAMS):
    path = tmp_path / "programs.toml"
    path.write_text(text)
    server = server_runner.run("--programs", str(path))
    client = Client(server)
    wait_until(lambda: programs(client).keys() >= {"web", "worker"})
    return server, client, path


def test_the_files_programs_run_with_their_definition(server_runner, tmp_path):
    _, client, _ = serve(server_runner, tmp_path)
    running = programs(client)
    assert running.keys() == {"web", "worker"}, "autostart false stays down"
    wait_until(lambda: open_files_limit(running["worker"]) == "123")
    assert client("INFO worker")["process"]["restart"] == "on-failure"


def test_reload_adds_changes_and_removes_and_leaves_the_rest(server_runner, tmp_path):
    _, client, path = serve(server_runner, tmp_path)
    before = programs(client)
    by_hand = client("START --name manual sleep 304")["pid"]
    changed = PROGRAMS.replace('"exec sleep 302"', '"exec sleep 305"')
    changed = changed.replace('[programs.web]\ncommand = "sleep 301"\nrestart = "always"\n', "")
    changed += '\n[programs.extra]\ncommand = "sleep 306"\n'
    path.write_text(changed)
    reply = client("RELOAD")
    assert reply["ok"]
    after = programs(client)
    assert sorted(reply["changes"]) == sorted(
        [
            "- web stopped",
            f"~ worker restarted {after['worker']}",
            f"+ extra started {after['extra']}",
        ]
    )
    assert not pid_alive(before["web"]) and not pid_alive(before["worker"])
    assert after["manual"] == by_hand, "a program started by hand is never the file's"
    assert client("RELOAD")["changes"] == [], "nothing changed: nothing done"


def test_an_invalid_file_changes_nothing(server_runner, tmp_path):
    _, client, path = serve(server_runner, tmp_path)
    before = programs(client)
    path.write_text(PROGRAMS.replace('restart = "always"', 'restart = "sometimes"'))
    reply = client("RELOAD")
    assert reply["error"] == "bad-argument"
    assert "program 'web': restart must be no, on-failure or always" in reply["message"]
    assert programs(client) == before


def test_sighup_reloads(server_runner, tmp_path):
    server, client, path = serve(server_runner, tmp_path)
    path.write_text(PROGRAMS + '\n[programs.late]\ncommand = "sleep 307"\n')
    os.kill(server.process.pid, signal.SIGHUP)
    wait_until(lambda: "late" in programs(client))


def test_a_bad_file_stops_the_server_at_start_saying_why(tmp_path):
    path = tmp_path / "programs.toml"
    path.write_text('[programs.web]\ncomand = "sleep 1"\n')
    command = [str(BIN / "twistd"), "-n", "--pidfile=", "rpm", "--port", "0"]
    command += ["--state-dir", str(tmp_path / "state"), "--programs", str(path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert "program 'web': unknown key 'comand' (did you mean 'command'?)" in result.stderr


def test_after_a_reboot_every_autostart_program_runs_again_within_2_s(server_runner, tmp_path):
    server, client, _ = serve(server_runner, tmp_path)
    for pid in programs(client).values():
        os.kill(pid, signal.SIGKILL)  # a reboot: the server and every program gone at once
    kill9(server)
    began = time.monotonic()
    again = server_runner.run(port=server.port, state_dir=server.state_dir)
    listening = time.monotonic()
    client = Client(again)
    wait_until(lambda: programs(client).keys() >= {"web", "worker"}, timeout=30)
    assert time.monotonic() - listening < 2.0 + 0.5, "up within 2 s of listening (and a LIST)"
    assert listening >= began


def test_the_stop_signal_and_grace_of_the_file_are_used(server_runner, tmp_path):
    text = """
[programs.polite]
argv = ["sh", "-c", "trap 'exit 0' INT; trap '' TERM; while :; do sleep 0.1; done"]
stop_signal = "INT"
stop_grace = 30
"""
    _, client, path = serve_named(server_runner, tmp_path, text, "polite")
    pid = programs(client)["polite"]
    wait_until(lambda: psutil.Process(pid).children())  # the traps are set
    path.write_text("")
    began = time.monotonic()
    assert client("RELOAD")["changes"] == ["- polite stopped"]
    assert time.monotonic() - began < 15, "stopped by INT, not by KILL after its 30 s grace"
    assert not pid_alive(pid)


def serve_named(server_runner, tmp_path, text: str, name: str):
    path = tmp_path / "programs.toml"
    path.write_text(text)
    server = server_runner.run("--programs", str(path))
    client = Client(server)
    wait_until(lambda: name in programs(client))
    return server, client, path


HOG = (
    "import time; hog = bytearray(64 << 20); hog[::4096] = b'x' * len(hog[::4096]); time.sleep(300)"
)


def test_a_program_past_its_max_memory_is_restarted_and_watchers_told(server_runner, tmp_path):
    text = f"""
[programs.hog]
argv = ["{sys.executable}", "-c", "{HOG}"]
max_memory = "16M"
"""
    server, client, _ = serve_named(server_runner, tmp_path, text, "hog")
    watcher = Client(server)
    watcher.sock.sendall(b"WATCH 3600 --delta\n")
    first = programs(client)["hog"]
    deadline = time.monotonic() + 60
    while True:
        event = watcher.event()
        if event.get("event") == "restarted":
            break
        assert time.monotonic() < deadline, "no memory restart"
    assert event["program"] == "hog" and event["pid"] != first
    assert event["reason"].startswith("memory ") and event["reason"].endswith(" above 16.0M")
    assert not pid_alive(first)
    details = client("INFO hog")["process"]
    assert details["max_memory"] == 16 << 20 and details["restarts"] >= 1


def test_start_takes_max_memory_and_limits_too(server_runner):
    server = server_runner.run()
    client = Client(server)
    reply = client("START --name capped --max-memory 1G --limit nofile=77 --limit core=0 sleep 300")
    details = client("INFO capped")["process"]
    assert details["max_memory"] == 1 << 30
    assert details["limits"] == [["core", 0], ["nofile", 77]]
    assert open_files_limit(reply["pid"]) == "77", "taken before the program ran"
    refused = client("START --limit nofiles=1 sleep 1")
    assert refused["error"] == "bad-argument" and "did you mean 'nofile'" in refused["message"]


def test_a_program_that_could_not_start_starts_at_the_next_reload(server_runner, tmp_path):
    tool = tmp_path / "tool.sh"
    tool.write_text("#!/no/such/shell\nexec sleep 307\n")
    tool.chmod(0o755)
    text = PROGRAMS + f'\n[programs.tool]\ncommand = "{tool}"\n'
    _, client, _ = serve(server_runner, tmp_path, text)
    assert "tool" not in programs(client)
    tool.write_text("#!/bin/sh\nexec sleep 307\n")  # its interpreter fixed; the file is not
    started = client("RELOAD")
    assert started["changes"] == [f"+ tool started {programs(client)['tool']}"], started
