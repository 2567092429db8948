"""Nothing lost: a real server killed with SIGKILL, its managed processes adopted by the next
one, with their logs, restart policies and records intact."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from rpm.server.managed.store import Store
from rpm.server.procs.identity import read_stat
from rpm.server.service import state_marker
from tests.servers import BIN, talk
from tests.support import at_least, pid_alive, wait_until

COUNTER = "i=0; while :; do echo line $i; i=$((i+1)); sleep 0.1; done"


class Client:
    """A blocking, authenticated JSON-mode connection to a server process."""

    def __init__(self, server):
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=15)
        self.file = self.sock.makefile("rb")
        assert self.file.readline().startswith(b"OK rpm ")
        self.sock.sendall(f"MODE json\nAUTH {server.token}\n".encode())
        self.file.readline()
        assert json.loads(self.file.readline())["ok"]

    def __call__(self, line: str) -> dict:
        self.sock.sendall(line.encode() + b"\n")
        return self.read()

    def event(self) -> dict:
        """The next event (the connection is watching)."""
        while "event" not in (message := json.loads(self.file.readline())):
            pass
        return message

    def read(self) -> dict:
        """The next reply, events skipped."""
        while True:
            message = json.loads(self.file.readline())
            if "event" not in message:
                return message

    def close(self) -> None:
        self.sock.close()


def kill9(server) -> None:
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)


def numbers(lines: list[str]) -> list[int]:
    return [int(line.split()[1]) for line in lines if line.startswith("line ")]


def test_managed_processes_survive_a_sigkill_of_the_server_and_are_adopted(server_runner):
    server = server_runner.run()
    client = Client(server)
    counter = client(f"START sh -c '{COUNTER}'")["pid"]
    sleepers = [client(f"START sleep {300 + n}")["pid"] for n in range(8)]
    short = client("START sh -c 'sleep 1.5; exit 7'")["pid"]
    time.sleep(0.7)
    client.close()
    kill9(server)
    assert pid_alive(counter) and all(map(pid_alive, sleepers)), "they outlive the server"
    wait_until(lambda: not pid_alive(short), timeout=20)  # it ends while no server runs
    time.sleep(0.5)  # the counter writes more lines while no server runs
    again = server_runner.run(port=server.port, state_dir=server.state_dir)
    client = Client(again)
    managed = {row["pid"] for row in client("LIST --managed")["processes"]}
    assert managed == {counter, *sleepers}, "every survivor is adopted"
    ended = client(f"INFO {short}")["process"]
    assert ended["managed"] and ended["ended"] is not None
    # Its status is known if the server found it still a zombie at adoption (its new parent
    # had not reaped it yet), whatever it is by now; either way, what is said must be true.
    assert ended["status"] in ("zombie", "dead")
    if ended["status"] == "zombie" or ended["exit_known"]:
        assert (ended["exit_known"], ended["exit_code"]) == (True, 7)
    else:
        assert ended["exit_code"] is None
    # lines written before, while no server ran, and after: none missing
    got = wait_until(lambda: at_least(40, numbers(client(f"LOGS {counter} 1000")["lines"])))
    assert got == list(range(len(got))), "no numbered line is missing"
    assert client(f"PAUSE {sleepers[0]}")["ok"] and client(f"RESUME {sleepers[0]}")["ok"]
    assert client(f"SIGNAL {sleepers[1]} TERM") == {
        "ok": True,
        "pid": sleepers[1],
        "signal": "SIGTERM",
    }
    reply = client(f"STOP {counter}")
    assert (reply["ok"], reply["pid"], reply["signal"]) == (True, counter, "SIGTERM")
    assert not pid_alive(counter)
    wait_until(lambda: not pid_alive(sleepers[1]))
    info = client(f"INFO {counter}")["process"]
    assert info["status"] in ("dead", "zombie") and info["ended"] is not None
    if info["exit_known"]:  # caught as a zombie before its new parent reaped it
        assert info["exit_signal"] == "SIGTERM"


def test_following_loses_nothing_across_a_server_restart(server_runner):
    server = server_runner.run()
    client = Client(server)
    pid = client(f"START sh -c '{COUNTER}'")["pid"]
    time.sleep(0.5)
    kill9(server)
    time.sleep(1.0)
    again = server_runner.run(port=server.port, state_dir=server.state_dir)
    client = Client(again)
    client.sock.sendall(f"FOLLOW {pid} 1000\n".encode())
    seen = []
    deadline = time.monotonic() + 10
    while len(numbers(seen)) < 40:
        assert time.monotonic() < deadline
        message = json.loads(client.file.readline())
        if message.get("event") == "output":
            seen.append(message["line"])
    got = numbers(seen)
    assert got == list(range(len(got))), "backlog and live lines join without gap or repeat"
    client("UNFOLLOW " + str(pid))


def runs_of(marker) -> list[int]:
    """Running processes whose command line names marker (a program's runs)."""
    return [
        proc.pid
        for proc in psutil.process_iter(["cmdline", "status"])
        if str(marker) in " ".join(proc.info["cmdline"] or ())
        and proc.info["status"] != psutil.STATUS_ZOMBIE
    ]


def test_a_restart_policy_keeps_working_across_a_server_restart(server_runner, tmp_path):
    marker = tmp_path / "runs"
    server = server_runner.run()
    client = Client(server)
    pid = client(f"START --restart always -- sh -c 'echo run >> {marker}; sleep 1; exit 3'")["pid"]
    wait_until(lambda: marker.exists() and marker.read_text().count("run") >= 2)
    kill9(server)
    count = marker.read_text().count("run")
    wait_until(lambda: not runs_of(marker), timeout=20)
    time.sleep(1.5)  # more than the backoff: a restart would have written by now
    assert marker.read_text().count("run") == count, "nothing restarts it without a server"
    again = server_runner.run(port=server.port, state_dir=server.state_dir)
    wait_until(lambda: marker.read_text().count("run") >= count + 2, timeout=20)
    client = Client(again)
    current = client("LIST --managed")["processes"]
    assert len(current) == 1 and current[0]["pid"] != pid
    info = client(f"INFO {current[0]['pid']}")["process"]
    assert info["restart"] == "always" and info["restarts"] >= 2
    assert client(f"STOP {current[0]['pid']}")["ok"]
    runs = marker.read_text().count("run")
    time.sleep(2.5)
    assert marker.read_text().count("run") == runs, "STOP ended the policy"
    kill9(again)
    third = server_runner.run(port=server.port, state_dir=server.state_dir)
    time.sleep(2.5)
    assert marker.read_text().count("run") == runs, "an ended policy stays ended"
    assert Client(third)("LIST --managed")["processes"] == []


def test_stop_children_on_exit_stops_them_and_the_default_does_not(server_runner):
    keep = server_runner.run()
    pid = Client(keep)("START sleep 300")["pid"]
    os.killpg(keep.process.pid, signal.SIGTERM)
    keep.process.wait(timeout=15)
    assert pid_alive(pid)
    stopping = server_runner.run("--stop-children-on-exit")
    client = Client(stopping)
    pids = [
        client("START sleep 300")["pid"],
        client("START sh -c 'trap \"\" TERM; sleep 300'")["pid"],
    ]
    os.killpg(stopping.process.pid, signal.SIGTERM)
    stopping.process.wait(timeout=20)
    assert not any(map(pid_alive, pids)), "TERM, then KILL for the one ignoring it"


def marked_processes(state_dir) -> set[int]:
    """Live processes carrying a RPM_RUN marker of this state directory's programs."""
    prefix = f"RPM_RUN={state_marker(str(state_dir))}.".encode()
    found = set()
    for name in filter(str.isdigit, os.listdir("/proc")):
        stat = read_stat(int(name))
        with contextlib.suppress(OSError):
            environ = (Path("/proc") / name / "environ").read_bytes().split(b"\0")
            if stat and stat[1][0] != b"Z" and any(v.startswith(prefix) for v in environ):
                found.add(int(name))
    return found


def test_a_sigkill_at_a_random_point_of_a_start_storm_loses_nothing_and_leaks_nothing(
    server_runner,
):
    server = server_runner.run()
    client = Client(server)
    answered: list[int] = []
    stop = threading.Event()

    def storm() -> None:
        try:
            while not stop.is_set():  # pipelined, so records share transactions
                client.sock.sendall(b"START sleep 300\n" * 8)
                for _ in range(8):
                    reply = client.read()
                    if reply.get("ok"):
                        answered.append(reply["pid"])
        except (OSError, ValueError):
            pass  # the server died mid-reply

    worker = threading.Thread(target=storm)
    worker.start()
    wait_until(lambda: len(answered) >= random.randint(10, 80))
    kill9(server)
    stop.set()
    worker.join(timeout=10)
    database = sqlite3.connect(str(server.state_dir / "rpm.db"))
    assert database.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    recorded = {pid for (pid,) in database.execute("SELECT pid FROM runs")}
    database.close()
    assert set(answered) <= recorded, "every START answered OK was committed"
    again = server_runner.run(port=server.port, state_dir=server.state_dir)
    managed = {row["pid"] for row in Client(again)("LIST --managed")["processes"]}
    assert set(answered) <= managed, "no process answered OK is lost"
    running = marked_processes(server.state_dir)
    assert running <= managed, "every process a START spawned is managed, none is unknown"


def test_a_second_server_on_the_same_state_directory_is_refused(server_runner):
    first = server_runner.run()
    command = [str(BIN / "twistd"), "-n", "--pidfile=", "rpm", "--port", "0"]
    command += ["--state-dir", str(first.state_dir)]
    second = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert second.returncode != 0
    assert f"another rpm server (pid {first.process.pid}) uses the state directory" in (
        second.stderr
    )
    assert talk(first.port, "PING", "EXIT")[1] == "OK pong", "the first one serves on"
    assert (first.state_dir / "lock").stat().st_mode & 0o777 == 0o600


def test_out_of_file_descriptors_new_clients_are_told_and_open_ones_served(server_runner):
    server = server_runner.run(prefix=("prlimit", "--nofile=64:64", "--"))
    operator = Client(server)
    pid = operator("START sh -c 'echo hello; exec sleep 300'")["pid"]
    wait_until(lambda: operator(f"LOGS {pid}")["lines"] == ["hello"])
    hogs, greeting = [], b""
    try:
        while len(hogs) < 200:  # until the server turns new connections away
            hog = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            hogs.append(hog)
            greeting = hog.recv(200)
            if not greeting.startswith(b"OK rpm "):
                break
        assert greeting.startswith(b"ERR limit the server is out of file descriptors"), greeting
        replies = [operator(request) for request in (f"LOGS {pid}", f"INFO {pid}", "LIST")]
        assert all(reply["ok"] for reply in replies), "descriptors are kept for requests"
    finally:
        for hog in hogs:
            hog.close()
    wait_until(lambda: new_client_reads(server, pid))  # once the hogs are gone, new clients too


def new_client_reads(server, pid: int) -> bool:
    """Whether a new connection is taken and LOGS works on it."""
    try:
        client = Client(server)
    except AssertionError:  # turned away: the server has not seen the closes yet
        return False
    try:
        return client(f"LOGS {pid}").get("lines") == ["hello"]
    finally:
        client.close()


TALKER = "echo out; echo err >&2; exec sleep 60"


def test_state_stays_bounded_over_many_start_stop_cycles(server_runner):
    server = server_runner.run("--keep-ended", "5")
    client = Client(server)
    for _ in range(2000):  # each writes to both streams, so that it has files to prune
        pid = client(f"START -- sh -c {shlex.quote(TALKER)}")["pid"]
        assert client(f"STOP {pid} 1")["ok"]
    logs = server.state_dir / "logs"
    files = 4  # .out and .err, the order journal .idx, the log writers' .lock
    wait_until(lambda: len(list(logs.iterdir())) <= 6 * files, timeout=30)
    assert len(client("HISTORY 1000")["history"]) == 1000, "the newest thousand, no more"
    database = server.state_dir / "rpm.db"
    size = database.stat().st_size + (server.state_dir / "rpm.db-wal").stat().st_size
    assert size < 10_000_000
    store = Store(str(database))
    try:  # 5 kept, and the newest (pruning runs a moment after programs end)
        wait_until(lambda: len(store.records()) <= 6, timeout=30)
    finally:
        store.close()


WRITER = (
    "import sys; [sys.stdout.write(f'line {n:07d}\\n') for n in range(400_000)]; sys.stdout.flush()"
)


def test_a_follower_of_a_fast_writer_gets_every_line_kept_or_a_gap(server_runner):
    server = server_runner.run("--log-max-bytes", "262144")
    client = Client(server)
    writer = client(f"START -- {shlex.quote(sys.executable)} -c {shlex.quote(WRITER)}")["pid"]
    client.sock.sendall(f"FOLLOW {writer}\n".encode())
    gap, last, deadline = False, -1, time.monotonic() + 60
    while last < 399_999:
        assert time.monotonic() < deadline, f"stuck after line {last}"
        message = json.loads(client.file.readline())
        if message.get("event") == "gap":
            gap = True
        elif message.get("event") == "output":
            number = int(message["line"].split()[1])
            assert number == last + 1 or (gap and number > last), f"a silent hole at {last}"
            gap, last = False, number


@pytest.mark.parametrize(
    "fault",
    ["deleted", "overwritten", "corrupted in place", "damaged past its header", "journal deleted"],
)
def test_a_registry_lost_under_a_running_server_is_rebuilt_from_memory(server_runner, fault):
    server = server_runner.run()
    client = Client(server)
    started = [client("START sleep 300")["pid"]]
    database = server.state_dir / "rpm.db"
    if fault == "corrupted in place":  # the same file, its first page overwritten
        with open(database, "r+b") as handle:
            handle.write(b"\xff" * 4096)
    elif fault == "damaged past its header":  # every page but the first, as a stray dd would
        outside = sqlite3.connect(database)  # (the journal's pages first copied into the file)
        outside.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        outside.close()
        with open(database, "r+b") as handle:
            handle.seek(4096)
            handle.write(b"\xa5" * (database.stat().st_size - 4096))
        reply = client("START sleep 300")  # meets the damage, or the new registry
        assert reply["ok"] or reply["error"] == "storage", reply
        started += [reply["pid"]] if reply["ok"] else []
    elif fault == "journal deleted":  # what the server commits next would go nowhere
        (server.state_dir / "rpm.db-wal").unlink()
        started.append(client("START sleep 300")["pid"])
    else:
        for name in ("rpm.db", "rpm.db-wal", "rpm.db-shm"):
            (server.state_dir / name).unlink(missing_ok=True)
    if fault == "overwritten":
        database.write_bytes(b"not a database")
    wait_until(lambda: "the new registry holds" in server.log.read_text())
    kill9(server)
    again = server_runner.run(port=server.port, state_dir=server.state_dir)
    listed = Client(again)("LIST --managed")["processes"]
    assert sorted(row["pid"] for row in listed) == sorted(started), "the next server adopts"
    if fault not in ("deleted", "journal deleted"):
        assert list(server.state_dir.glob("rpm.db.replaced-*")), "the foreign file is kept"


TICKER = "n=0; while :; do n=$((n+1)); echo tick $n; sleep 0.05; done"


def test_a_logs_directory_removed_under_a_running_server_is_made_again(server_runner):
    server = server_runner.run()
    client = Client(server)
    ticker = client(f"START -- sh -c {shlex.quote(TICKER)}")["pid"]

    def last_tick() -> int:
        lines = client(f"LOGS {ticker}")["lines"]
        return int(lines[-1].split()[1]) if lines else 0

    seen = wait_until(last_tick)
    logs = server.state_dir / "logs"
    shutil.rmtree(logs)
    talker = client("START -- sh -c 'echo hello; exec sleep 30'")["pid"]
    wait_until(lambda: client(f"LOGS {talker}")["lines"] == ["hello"])
    wait_until(lambda: last_tick() > seen + 1)  # the running program's output goes on
    assert logs.stat().st_mode & 0o777 == 0o700, "made again as private as before"


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs, unmounted (lazily, if still busy) at the end."""
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the disk refuses (ENOSPC)."""
    filler = directory / "filler"
    with open(filler, "wb") as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 65536)
            handle.flush()
    return filler


def test_a_full_disk_is_answered_storage_and_nothing_runs_unrecorded(server_runner, small_disk):
    server = server_runner.run(state_dir=small_disk / "state")
    client = Client(server)
    filler = fill(small_disk)
    answered, refused = [], None
    for _ in range(3000):  # the registry's journal grows until the disk refuses it
        reply = client("START sleep 300")
        if not reply["ok"]:
            refused = reply
            break
        answered.append(reply["pid"])
    assert refused is not None, "the disk never filled"
    assert refused["error"] == "storage" and "the disk is full" in refused["message"], refused
    assert client("PING")["ok"] and client("LIST --managed")["ok"], "reading goes on"
    filler.unlink()
    started = client("START sleep 300")
    assert started["ok"], "full service once there is room"
    managed = {row["pid"] for row in client("LIST --managed")["processes"]}
    assert {*answered, started["pid"]} <= managed
    assert marked_processes(small_disk / "state") <= managed, "nothing runs unrecorded"
    kill9(server)
    again = server_runner.run(port=server.port, state_dir=small_disk / "state")
    adopted = {row["pid"] for row in Client(again)("LIST --managed")["processes"]}
    assert {*answered, started["pid"]} <= adopted, "every OK'd process is in the registry"


def test_a_programs_name_survives_a_sigkill_of_the_server(server_runner):
    server = server_runner.run()
    pid = Client(server)("START --name keeper sleep 300")["pid"]
    kill9(server)
    again = server_runner.run(port=server.port, state_dir=server.state_dir)
    client = Client(again)
    assert client("INFO keeper")["process"]["pid"] == pid, "adopted with its name"
    assert client("START --name keeper sleep 300")["error"] == "bad-argument", "still taken"
    assert client("STOP keeper")["pid"] == pid
