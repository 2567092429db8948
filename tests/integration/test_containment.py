"""Nothing escapes and nobody is locked out: threads, AUTH under attack, what strangers see
(real servers, real processes)."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time

import psutil
import pytest

from tests.servers import BIN, talk
from tests.support import kill_tree, wait_until


def server_threads(pid: int) -> list[int]:
    """The server's thread ids other than its main thread."""
    return [int(tid) for tid in os.listdir(f"/proc/{pid}/task") if int(tid) != pid]


def test_stop_of_a_server_thread_is_protected_and_the_server_lives(run_server):
    server = run_server()
    talk(server.port, "LIST", "EXIT")  # the sampler's worker thread exists from now on
    threads = wait_until(lambda: server_threads(server.process.pid))
    for tid in threads[:3]:
        lines = talk(
            server.port, f"AUTH {server.token}", f"STOP {tid}", f"SIGNAL {tid} KILL", "EXIT"
        )
        assert lines[2].startswith("ERR protected") and lines[3].startswith("ERR protected")
    assert server.process.poll() is None
    assert talk(server.port, "PING", "EXIT")[1] == "OK pong"


def wrong_auths(port: int, source: str, count: int) -> list[socket.socket]:
    """count connections from source, each sending a wrong AUTH, left open (not read)."""
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
        sock.sendall(b"AUTH not-the-token\n")
        sockets.append(sock)
    return sockets


def auth_seconds(port: int, source: str, token: str, timeout=30.0) -> tuple[str, float]:
    """(the AUTH reply, how long it took) on a new connection from source."""
    address = ("127.0.0.1", port)
    with socket.create_connection(address, timeout=timeout, source_address=(source, 0)) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        started = time.monotonic()
        sock.sendall(f"AUTH {token}\n".encode())
        reply = reader.readline().decode().strip()
        return reply, time.monotonic() - started


def test_an_auth_storm_from_loopback_neither_delays_the_operator_nor_escapes_the_throttle(
    run_server,
):
    server = run_server("--max-connections-per-peer", "200")
    storm = wrong_auths(server.port, "127.0.0.2", 40)
    try:
        storm[0].makefile("rb").readline()  # greeting
        reply, seconds = auth_seconds(server.port, "127.0.0.1", server.token)
        assert reply == "OK authenticated" and seconds < 1.0
        assert storm[0].makefile("rb").readline().startswith(b"ERR auth-failed")
        with pytest.raises(TimeoutError):  # another loopback address is the same peer
            auth_seconds(server.port, "127.0.0.3", "another-wrong-token", timeout=1.0)
    finally:
        for sock in storm:
            sock.close()


def test_refusals_before_auth_cannot_fill_the_disk_or_the_history(run_server):
    server = run_server()
    database = server.state_dir / "rpm.db"
    before = database.stat().st_size + (server.state_dir / "rpm.db-wal").stat().st_size
    line = "START " + "x" * 65000
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        for _ in range(5):  # 500 requests in bursts of 100
            sock.sendall(f"{line}\n".encode() * 100)
            for _ in range(100):
                assert reader.readline().startswith(b"ERR auth-required")
    seconds = time.monotonic() - started
    lines = talk(server.port, f"AUTH {server.token}", "HISTORY 1000", "EXIT")
    records = lines[3:-2]
    assert len(records) <= 20 * (seconds + 2), "10 a second, and a count of the rest"
    assert all(len(record) < 600 for record in records)
    if seconds < 10:
        assert any("not recorded one by one" in record for record in records)
    after = database.stat().st_size + (server.state_dir / "rpm.db-wal").stat().st_size
    assert after - before < 1_000_000


def info_fields(port: int, pid: int, *before: str) -> dict:
    lines = talk(port, *before, "MODE json", f"INFO {pid}", "EXIT")
    return json.loads(lines[-2])


def test_before_auth_info_shows_only_what_ps_shows_anyone(run_server):
    server = run_server()
    pid = int(talk(server.port, f"AUTH {server.token}", "START sleep 300", "EXIT")[2].split()[1])
    wait_until(lambda: info_fields(server.port, pid)["process"]["cmdline"] == ["sleep", "300"])
    stranger = info_fields(server.port, pid)["process"]
    assert set(stranger) == {
        *("pid", "ppid", "user", "name", "cmdline", "status", "cpu", "rss", "started"),
        *("managed", "cwd", "threads", "children", "restarts", "exit_code", "exit_signal"),
        "program",  # a managed program's name, as LIST shows anyone
    }, "the contract's INFO keys"
    assert stranger["cwd"] is None
    operator = info_fields(server.port, pid, f"AUTH {server.token}")["process"]
    assert {"exe", "env"} <= set(operator) and operator["cwd"] is not None
    talk(server.port, f"AUTH {server.token}", f"STOP {pid}", "EXIT")
    ended = info_fields(server.port, pid)["process"]
    assert ended["status"] == "dead" and ended["exit_signal"] == "SIGTERM"
    assert ended["cmdline"] is None and ended["cwd"] is None, "no argv of an ended run"


def test_the_servers_files_are_its_users_only_and_its_programs_keep_the_umask(
    server_runner, tmp_path
):
    log = tmp_path / "server.log"
    server = server_runner.run(runner=("twistd", "-n", "--pidfile=", "--logfile", str(log)))
    made = tmp_path / "made-by-a-program"
    talk(server.port, f"AUTH {server.token}", f"START touch {made}", "EXIT")
    wait_until(made.exists)
    state = server.state_dir
    for path in (log, state / "token", state / "rpm.db", *state.glob("logs/*")):
        assert path.stat().st_mode & 0o077 == 0, path
    assert made.stat().st_mode & 0o777 == 0o666 & ~current_umask()


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_state_directory_that_is_a_link_or_someone_elses_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    result = subprocess.run(
        [str(BIN / "twistd"), "-n", "--pidfile=", "rpm", "--port", "0", "--state-dir", str(link)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0 and "symbolic link" in result.stderr


def test_allow_programs_confines_what_a_token_holder_can_start(run_server, tmp_path):
    sleep = shutil.which("sleep")
    allowed = tmp_path / "allowed"
    allowed.write_text(f"# what this server may run\n{sleep}\n/nonexistent/bin/*\n")
    server = run_server("--allow-programs", str(allowed))
    lines = talk(server.port, f"AUTH {server.token}", "START sleep 300", "START kill 1", "EXIT")
    assert lines[2].endswith(" started")
    assert lines[3].startswith("ERR not-permitted") and "--allow-programs" in lines[3]
    talk(server.port, f"AUTH {server.token}", f"STOP {lines[2].split()[1]}", "EXIT")


def test_an_allow_list_with_a_relative_line_is_refused_at_start(tmp_path):
    allowed = tmp_path / "allowed"
    allowed.write_text("bin/sleep\n")
    command = [str(BIN / "twistd"), "-n", "--pidfile=", "rpm", "--port", "0"]
    command += ["--state-dir", str(tmp_path / "state"), "--allow-programs", str(allowed)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0 and "not an absolute path" in result.stderr


def test_restart_storms_stay_within_max_managed(run_server):
    server = run_server("--max-managed", "5")
    crashing = ["START --restart always sh -c 'sleep 0.2; exit 1'"] * 5
    lines = talk(server.port, f"AUTH {server.token}", *crashing, "START sleep 300", "EXIT")
    assert all(line.endswith(" started") for line in lines[2:7])
    assert lines[7].startswith("ERR limit") and "waiting to restart" in lines[7]
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:  # through several crash-and-restart rounds
        table = json.loads(talk(server.port, "MODE json", "LIST --managed", "EXIT")[2])
        assert len(table["processes"]) <= 5
        time.sleep(0.1)


def sleeping(seconds: str) -> psutil.Process | None:
    """The `sleep <seconds>` running (tests pick lengths no other process has)."""
    for proc in psutil.process_iter(["cmdline"]):
        if proc.info["cmdline"] == ["sleep", seconds]:
            return proc
    return None


def escaped_daemon(program: int, seconds: str) -> psutil.Process | None:
    """The `sleep <seconds>` that the program's double fork left outside its group."""
    daemon = sleeping(seconds)
    return daemon if daemon is not None and os.getpgid(daemon.pid) != program else None


@pytest.fixture
def daemon_seconds():
    """A sleep length no other process has, and the daemon sleeping it killed at the end."""
    seconds = str(random.randrange(100_000, 900_000))
    yield seconds
    for proc in psutil.process_iter(["cmdline"]):
        if proc.info["cmdline"] == ["sleep", seconds]:
            kill_tree(proc.pid)


DAEMONIZING = "sh -c '(setsid sleep {0} &); exec sleep 300'"


def test_stop_reaches_a_daemon_that_left_the_group_and_says_how_many(run_server, daemon_seconds):
    server = run_server()
    start = f"START {DAEMONIZING.format(daemon_seconds)}"
    pid = int(talk(server.port, f"AUTH {server.token}", start, "EXIT")[2].split()[1])
    daemon = wait_until(lambda: escaped_daemon(pid, daemon_seconds))
    assert daemon.ppid() == server.process.pid, "the server is the orphan's subreaper"
    reply = json.loads(
        talk(server.port, f"AUTH {server.token}", "MODE json", f"STOP {pid}", "EXIT")[3]
    )
    assert reply == {"ok": True, "pid": pid, "processes": 2, "signal": "SIGTERM"}
    assert not daemon.is_running() or daemon.status() == psutil.STATUS_ZOMBIE
    wait_until(lambda: not psutil.pid_exists(daemon.pid), timeout=10)  # reaped by the server
    info = info_fields(server.port, server.process.pid, f"AUTH {server.token}")
    assert "subreaper" in info["process"]["containment"]


def test_a_stop_reaches_nothing_below_another_programs_run_whatever_it_carries(
    run_server, daemon_seconds
):
    """STOP looks for a program's processes everywhere but below the other programs' runs,
    which it neither reads nor signals: not even a process there that carries its marker."""
    server = run_server()
    auth = f"AUTH {server.token}"
    start = f"START {DAEMONIZING.format(daemon_seconds)}"
    pid = int(talk(server.port, auth, start, "EXIT")[2].split()[1])
    daemon = wait_until(lambda: escaped_daemon(pid, daemon_seconds))
    with open(f"/proc/{pid}/environ", "rb") as environ:
        marker = next(v for v in environ.read().split(b"\0") if v.startswith(b"RPM_RUN="))
    posing = str(int(daemon_seconds) + 1)
    other = f"START sh -c '{marker.decode()} sleep {posing} & exec sleep 300'"
    other_pid = int(talk(server.port, auth, other, "EXIT")[2].split()[1])
    impostor = wait_until(lambda: sleeping(posing))
    talk(server.port, auth, "LIST", "EXIT")  # the server's latest table holds the impostor
    reply = json.loads(talk(server.port, auth, "MODE json", f"STOP {pid}", "EXIT")[3])
    assert reply == {"ok": True, "pid": pid, "processes": 2, "signal": "SIGTERM"}
    assert not daemon.is_running() or daemon.status() == psutil.STATUS_ZOMBIE
    assert impostor.status() != psutil.STATUS_ZOMBIE, "below the other program: untouched"
    talk(server.port, auth, f"STOP {other_pid}", "EXIT")
    wait_until(lambda: not impostor.is_running() or impostor.status() == psutil.STATUS_ZOMBIE)


def test_a_restarted_server_still_finds_a_daemon_by_its_marker(server_runner, daemon_seconds):
    server = server_runner.run()
    start = f"START {DAEMONIZING.format(daemon_seconds)}"
    pid = int(talk(server.port, f"AUTH {server.token}", start, "EXIT")[2].split()[1])
    daemon = wait_until(lambda: escaped_daemon(pid, daemon_seconds))
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)
    again = server_runner.run(port=server.port, state_dir=server.state_dir)
    reply = json.loads(
        talk(again.port, f"AUTH {again.token}", "MODE json", f"STOP {pid}", "EXIT")[3]
    )
    assert reply == {"ok": True, "pid": pid, "processes": 2, "signal": "SIGTERM"}
    wait_until(lambda: not daemon.is_running() or daemon.status() == psutil.STATUS_ZOMBIE)


def test_in_a_cgroup_even_a_daemon_that_drops_its_environment_is_stopped(
    run_server, daemon_seconds
):
    server = run_server()
    containment = info_fields(server.port, server.process.pid, f"AUTH {server.token}")
    if "cgroups" not in containment["process"]["containment"]:
        pytest.skip("this machine lets the server create no cgroup (needs cgroup v2 delegation)")
    hidden = f"sh -c '(setsid env -i sleep {daemon_seconds} &); exec sleep 300'"
    pid = int(talk(server.port, f"AUTH {server.token}", f"START {hidden}", "EXIT")[2].split()[1])
    daemon = wait_until(lambda: escaped_daemon(pid, daemon_seconds))
    info = info_fields(server.port, pid, f"AUTH {server.token}")["process"]
    assert info["cgroup_cpu"] >= 0
    assert talk(server.port, f"AUTH {server.token}", f"PAUSE {pid}", "EXIT")[2].endswith("paused")
    wait_until(lambda: daemon.status() in (psutil.STATUS_STOPPED, psutil.STATUS_SLEEPING))
    talk(server.port, f"AUTH {server.token}", f"RESUME {pid}", "EXIT")
    reply = json.loads(
        talk(server.port, f"AUTH {server.token}", "MODE json", f"STOP {pid}", "EXIT")[3]
    )
    assert reply["ok"] and reply["processes"] == 2
    wait_until(lambda: not daemon.is_running() or daemon.status() == psutil.STATUS_ZOMBIE)
