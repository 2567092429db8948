"""The real `twistd rpm` / `twist rpm` from the installed package, as an operator runs it."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import psutil
import pytest

from tests.servers import BIN, PROJECT, ServerRunner, talk
from tests.support import wait_until

OPTIONS = (
    "--port",
    "--interface",
    "--listen",
    "--state-dir",
    "--token-file",
    "--no-auth",
    "--insecure",
    "--signal-scope",
    "--idle-timeout",
    "--max-managed",
)


def run_cli(*args: str, cwd="/", timeout: float = 60) -> subprocess.CompletedProcess:
    """Run one of the installed commands to completion."""
    command = [str(BIN / args[0]), *args[1:]]
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def start_rpm(tmp_path: Path, *options: str) -> subprocess.CompletedProcess:
    """`twistd -n rpm` with options that should stop it at once."""
    return run_cli(
        "twistd",
        "-n",
        "--pidfile=",
        "rpm",
        "--state-dir",
        str(tmp_path / "s"),
        *options,
        cwd=tmp_path,
    )


def listed(twistd_help: str) -> bool:
    return any(line.split()[:1] == ["rpm"] for line in twistd_help.splitlines())


def test_twistd_lists_the_plugin_from_the_installed_package():
    result = run_cli("twistd", "--help")
    assert result.returncode == 0 and listed(result.stdout), result.stdout
    usage = run_cli("twistd", "rpm", "--help").stdout
    assert all(option in usage for option in OPTIONS)


def test_twistd_rpm_serves_and_stops_on_sigterm_leaving_children_running(run_server):
    server = run_server()
    greeting, *_ = talk(server.port, "EXIT")
    assert greeting == "OK rpm 1.0.0 ready auth-required"
    assert (server.state_dir / "token").stat().st_mode & 0o777 == 0o600
    assert server.state_dir.stat().st_mode & 0o777 == 0o700
    lines = talk(server.port, f"AUTH {server.token}", "START sleep 300", "EXIT")
    pid = int(lines[2].split()[1])
    try:
        os.killpg(server.process.pid, signal.SIGTERM)
        # Twisted shuts down cleanly, then re-raises the signal so the exit status says why.
        assert server.process.wait(timeout=10) in (0, -signal.SIGTERM)
        log = server.log.read_text()
        assert "Main loop terminated." in log
        assert Path(f"/proc/{pid}").exists(), "the managed process outlives the server"
        assert server.token not in log
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def test_no_descriptor_the_server_inherited_reaches_its_programs(run_server):
    read_end, write_end = os.pipe()
    inherited = fcntl.fcntl(read_end, fcntl.F_DUPFD, 50)  # a free one, never one in use here
    os.set_inheritable(inherited, True)  # as a careless parent would leave it
    try:
        server = run_server(pass_fds=(inherited,))
    finally:
        for fd in (read_end, write_end, inherited):
            os.close(fd)
    talk(server.port, f"AUTH {server.token}", "START ls /proc/self/fd", "EXIT")
    log = server.state_dir / "logs" / "1.out"
    listed = wait_until(lambda: log.exists() and log.read_text().split())
    assert sorted(map(int, listed)) == [0, 1, 2, 3], "stdio, and the directory ls reads"


def test_twist_runs_the_same_plugin(run_server):
    server = run_server(runner=("twist",))
    assert talk(server.port, "PING", "EXIT")[1:] == ["OK pong", "OK bye"]


@pytest.mark.parametrize("runner", [("twistd", "-n", "--pidfile="), ("twist",)])
def test_the_server_log_rotates_keeping_a_bounded_number_of_files(run_server, tmp_path, runner):
    path = tmp_path / "logs" / "server.log"
    path.parent.mkdir()
    size = 64 * 1024
    options = ("--server-log", str(path), "--server-log-size", str(size), "--server-log-keep", "2")
    server = run_server(*options, runner=runner)
    for _ in range(1500):  # each connection logs its opening and its closing
        talk(server.port, "EXIT")
        if (path.parent / "server.log.2").exists() and path.stat().st_size > size / 2:
            break
    assert (path.parent / "server.log.2").exists(), "it rotated more than once"
    names = sorted(p.name for p in path.parent.iterdir())
    assert names == ["server.log", "server.log.1", "server.log.2"], "two old files kept, no more"
    assert all(p.stat().st_size <= size + 4096 for p in path.parent.iterdir())
    assert "connection from 127.0.0.1" in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600
    if runner[0] == "twistd":  # it took the place of twistd's own log (stdout here)
        assert "connection from" not in server.log.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "http"], "--port must be"),
        (["--signal-scope", "all"], "--signal-scope must be"),
        (["--interface", "0.0.0.0"], "refusing plain TCP"),
        (["--idle-timeout", "-5"], "--idle-timeout"),
        (["--state-dir", "/var/lib/rpm"], "package manager"),
        (["--state-dir", "/sys/rpm"], "cannot make the state directory /sys/rpm (Operation not"),
    ],
)
def test_bad_options_end_with_one_line_and_a_failure_status(tmp_path, args, message):
    result = start_rpm(tmp_path, *args)
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert message in result.stderr


def test_a_port_in_use_ends_the_server_with_a_clear_message(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = start_rpm(tmp_path, "--port", str(port))
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1 port {port}" in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_an_exposed_token_file_is_refused_at_start(tmp_path):
    token = tmp_path / "token"
    token.write_text("x" * 40)
    token.chmod(0o644)
    result = start_rpm(tmp_path, "--token-file", str(token))
    assert result.returncode != 0
    assert "readable by group or others" in result.stderr and "chmod 600" in result.stderr


def test_make_run_serves_on_5002_by_default():
    dry_run = subprocess.run(
        ["make", "-s", "-n", "run"], cwd=PROJECT, capture_output=True, text=True, check=True
    )
    assert "rpm --port 5002" in dry_run.stdout


def test_make_run_serves_and_says_how_to_connect(tmp_path):
    with socket.socket() as probe:  # a free port, so a `make run` already serving is no bother
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {**os.environ, "HOME": str(tmp_path)}
    environment.pop("XDG_STATE_HOME", None)
    make = subprocess.Popen(
        ["make", "-s", "run", f"PORT={port}"],
        cwd=PROJECT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output = read_until(make, "then, to change anything", timeout=120)
        lines = talk(port, "PING", "EXIT")
        assert lines[0].startswith("OK rpm ") and lines[1] == "OK pong"
        token = tmp_path / ".local/state/rpm/token"
        assert token.exists()
        assert f"token file:      {token}" in output
        assert f"rpm-tui 127.0.0.1:{port}" in output and f"telnet 127.0.0.1 {port}" in output
    finally:
        os.killpg(make.pid, signal.SIGTERM)
        make.wait(timeout=20)


def read_until(process: subprocess.Popen, marker: str, timeout: float) -> str:
    """What process printed up to a line holding marker (which must come within timeout)."""
    timer = threading.Timer(timeout, os.killpg, (process.pid, signal.SIGTERM))
    timer.start()
    output = []
    try:
        for line in iter(process.stdout.readline, b""):
            output.append(line.decode())
            if marker in output[-1]:
                return "".join(output)
    finally:
        timer.cancel()
    raise AssertionError(f"{marker!r} never printed:\n{''.join(output)}")


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory):
    """rpm built as a wheel and installed (not editable) into a fresh virtual environment."""
    root = tmp_path_factory.mktemp("wheel")

    def run(*command):
        subprocess.run(command, check=True, capture_output=True, timeout=600)

    run(str(BIN / "pip"), "wheel", "--no-deps", "-q", "-w", str(root / "dist"), str(PROJECT))
    run(sys.executable, "-m", "venv", str(root / "venv"))
    run(
        str(root / "venv/bin/pip"),
        "install",
        "-q",
        str(next((root / "dist").glob("remote_process_manager-*.whl"))),
    )
    return root / "venv/bin"


def test_a_wheel_install_provides_the_plugin_and_the_tui(wheel_venv, server_runner):
    help_text = subprocess.run(
        [str(wheel_venv / "twistd"), "--help"],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert listed(help_text)
    assert (wheel_venv / "rpm-tui").exists()
    server = server_runner.run(runner=(str(wheel_venv / "twistd"), "-n", "--pidfile="))
    assert talk(server.port, "PING", "EXIT")[1] == "OK pong"


@pytest.fixture
def nobody_runner():
    """Runs servers as the unprivileged user `nobody`, in a directory it owns."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a server as another user")
    user = pwd.getpwnam("nobody")
    path = Path(tempfile.mkdtemp(prefix="rpm-nobody-"))
    path.chmod(0o755)
    os.chown(path, user.pw_uid, user.pw_gid)
    runner = ServerRunner(path)
    yield runner
    runner.stop_all()
    shutil.rmtree(path, ignore_errors=True)


AS_NOBODY = ("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups")


def test_an_unprivileged_server_reports_what_the_system_refuses(nobody_runner, spawned):
    root_owned = subprocess.Popen(["sleep", "300"])
    spawned.append(root_owned.pid)
    server = nobody_runner.run(prefix=AS_NOBODY)
    lines = talk(
        server.port,
        f"AUTH {server.token}",
        f"STOP {root_owned.pid}",
        f"SIGNAL {root_owned.pid} HUP",
        "START sleep 300",
        "EXIT",
    )
    assert lines[2].startswith("ERR not-permitted"), lines
    assert lines[3].startswith("ERR not-permitted"), lines
    started = int(lines[4].split()[1])
    assert Path(f"/proc/{started}").stat().st_uid == pwd.getpwnam("nobody").pw_uid
    assert root_owned.poll() is None


def test_a_daemon_started_by_an_ordinary_user_from_the_root_directory_keeps_its_files(
    nobody_runner,
):
    state = nobody_runner.directory / "state"
    command = [*AS_NOBODY, str(BIN / "twistd"), "rpm", "--port", "0", "--state-dir", str(state)]
    command += ["--port-file", str(state / "port")]
    started = subprocess.run(
        command, cwd="/", capture_output=True, text=True, timeout=60, check=False
    )
    pid_file, log = state / "twistd.pid", state / "server.log"
    assert (started.returncode, started.stdout) == (
        0,
        f"rpm: / is not writable: its log is {log}, its pid in {pid_file}\n",
    ), started.stderr
    daemon = int(wait_until(lambda: pid_file.exists() and pid_file.read_text().strip()))
    try:
        wait_until(lambda: (state / "port").exists() and (state / "port").read_text())
        port = int((state / "port").read_text().split()[0].rsplit(":", 1)[1])
        assert talk(port, "PING", "EXIT")[1] == "OK pong"
        assert "starting up" in log.read_text(), "twistd's own log is the rotated one"
        assert not Path("/twistd.log").exists() and not Path("/twistd.pid").exists()
    finally:
        os.kill(daemon, signal.SIGTERM)
    wait_until(lambda: not pid_file.exists(), timeout=20)


def test_a_daemon_started_from_a_writable_directory_keeps_twistds_own_files(tmp_path):
    state = tmp_path / "state"
    command = [str(BIN / "twistd"), "rpm", "--port", "0", "--state-dir", str(state)]
    started = subprocess.run(
        [*command, "--port-file", str(tmp_path / "port")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (started.returncode, started.stdout) == (0, ""), started.stderr
    pid_file = tmp_path / "twistd.pid"
    daemon = int(wait_until(lambda: pid_file.exists() and pid_file.read_text().strip()))
    try:
        wait_until(lambda: (tmp_path / "port").exists() and (tmp_path / "port").read_text())
        assert (tmp_path / "twistd.log").exists(), "twistd's own log, where it always was"
        assert not (state / "twistd.pid").exists() and not (state / "server.log").exists()
    finally:
        os.kill(daemon, signal.SIGTERM)
    wait_until(lambda: not pid_file.exists(), timeout=20)


def tasks_of(uid: int) -> int:
    """How many tasks (threads count: RLIMIT_NPROC counts them) the user runs now."""
    return sum(
        proc.info["num_threads"] or 0
        for proc in psutil.process_iter(["uids", "num_threads"])
        if proc.info["uids"] is not None and proc.info["uids"].real == uid
    )


def test_a_user_out_of_processes_is_told_so_and_the_table_still_lists(nobody_runner, spawned):
    nobody = pwd.getpwnam("nobody").pw_uid
    limit = tasks_of(nobody) + 40
    server = nobody_runner.run(prefix=("prlimit", f"--nproc={limit}:{limit}", *AS_NOBODY))
    first = talk(server.port, f"AUTH {server.token}", "START sleep 300", "EXIT")[2]
    assert first.startswith("OK "), first
    fillers = [  # a runaway program of the same user would do this
        subprocess.Popen([*AS_NOBODY, "sleep", "300"]) for _ in range(limit - tasks_of(nobody) + 2)
    ]
    spawned.extend(filler.pid for filler in fillers)
    wait_until(lambda: tasks_of(nobody) >= limit)
    lines = talk(server.port, f"AUTH {server.token}", "START sleep 301", "LIST", "EXIT")
    refused, listed = lines[2:4]
    assert refused == (
        "ERR spawn-failed cannot start 'sleep': the server's user runs as many processes as it "
        "may (ulimit -u), or the system as many as it can"
    )
    assert listed.startswith("OK ") and int(listed.split()[1]) > len(fillers), listed
    stopped = talk(server.port, f"AUTH {server.token}", f"STOP {first.split()[1]}", "EXIT")[2]
    assert stopped == f"OK {first.split()[1]} stopped by SIGTERM", "STOP still reaches it"
    for filler in fillers[:5]:
        filler.kill()
        filler.wait(timeout=10)
    again = talk(server.port, f"AUTH {server.token}", "START sleep 302", "EXIT")[2]
    assert again.startswith("OK "), again


def test_a_unix_socket_listener_is_private_and_serves_local_reads(server_runner):
    short = Path(tempfile.mkdtemp(prefix="rpm-", dir="/tmp"))  # socket paths must be short
    socket_path = short / "rpm.sock"
    try:
        server = server_runner.run("--listen", f"unix:{socket_path}")
        assert server.address == str(socket_path)
        assert socket_path.stat().st_mode & 0o777 == 0o600
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(socket_path))
            sock.sendall(b"LIST --managed\r\nEXIT\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        lines = data.decode().split("\r\n")
        assert lines[0].startswith("OK rpm ") and lines[1] == "OK 0 processes"
    finally:
        server_runner.stop_all()
        shutil.rmtree(short, ignore_errors=True)
