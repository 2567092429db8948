"""The real `twistd rpm` / `twist rpm` from the installed package, as an operator runs it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.servers import BIN, PROJECT, talk, wait_for_file


def run_cli(*args: str, cwd="/", timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_twistd_lists_the_plugin_from_the_installed_package():
    result = run_cli("twistd", "--help")
    assert result.returncode == 0
    assert any(line.split()[:1] == ["rpm"] for line in result.stdout.splitlines()), result.stdout
    usage = run_cli("twistd", "rpm", "--help").stdout
    for option in (
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
    ):
        assert option in usage


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
        log = server.process.stdout.read()
        assert "Main loop terminated." in log
        assert Path(f"/proc/{pid}").exists(), "the managed process outlives the server"
        assert server.token not in log
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def test_twist_runs_the_same_plugin(run_server):
    server = run_server(runner=("twist",))
    assert talk(server.port, "PING", "EXIT")[1:] == ["OK pong", "OK bye"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "http"], "--port must be"),
        (["--signal-scope", "all"], "--signal-scope must be"),
        (["--interface", "0.0.0.0"], "refusing plain TCP"),
        (["--idle-timeout", "-5"], "--idle-timeout"),
        (["--state-dir", "/var/lib/rpm"], "package manager"),
    ],
)
def test_bad_options_end_with_one_line_and_a_failure_status(tmp_path, args, message):
    result = run_cli(
        "twistd", "-n", "--pidfile=", "rpm", "--state-dir", str(tmp_path / "s"), *args, cwd=tmp_path
    )
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert message in result.stderr


def test_a_port_in_use_ends_the_server_with_a_clear_message(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(
            "twistd",
            "-n",
            "--pidfile=",
            "rpm",
            "--port",
            str(port),
            "--state-dir",
            str(tmp_path / "s"),
            cwd=tmp_path,
        )
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1 port {port}" in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_an_exposed_token_file_is_refused_at_start(tmp_path):
    token = tmp_path / "token"
    token.write_text("x" * 40)
    token.chmod(0o644)
    result = run_cli(
        "twistd",
        "-n",
        "--pidfile=",
        "rpm",
        "--token-file",
        str(token),
        "--state-dir",
        str(tmp_path / "s"),
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "readable by group or others" in result.stderr and "chmod 600" in result.stderr


def test_make_run_serves_on_5002(tmp_path):
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 5002)) == 0:
            pytest.skip("something already listens on 5002")
    environment = {**os.environ, "HOME": str(tmp_path)}
    environment.pop("XDG_STATE_HOME", None)
    make = subprocess.Popen(
        ["make", "-s", "run"],
        cwd=PROJECT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                lines = talk(5002, "PING", "EXIT")
                break
            except OSError:
                assert make.poll() is None, make.stdout.read().decode()
                assert time.monotonic() < deadline, "make run did not start listening"
                time.sleep(0.2)
        assert lines[0].startswith("OK rpm ") and lines[1] == "OK pong"
        assert (tmp_path / ".local/state/rpm/token").exists()
    finally:
        os.killpg(make.pid, signal.SIGTERM)
        make.wait(timeout=20)


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory):
    """rpm built as a wheel and installed (not editable) into a fresh virtual environment."""
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [str(BIN / "pip"), "wheel", "--no-deps", "-q", "-w", str(root / "dist"), str(PROJECT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=120)
    wheel = next((root / "dist").glob("remote_process_manager-*.whl"))
    subprocess.run(
        [str(root / "venv/bin/pip"), "install", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return root / "venv/bin"


def test_a_wheel_install_provides_the_plugin_and_the_tui(wheel_venv, tmp_path):
    listed = subprocess.run(
        [str(wheel_venv / "twistd"), "--help"],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert any(line.split()[:1] == ["rpm"] for line in listed.splitlines())
    assert (wheel_venv / "rpm-tui").exists()
    port_file = tmp_path / "port"
    process = subprocess.Popen(
        [
            str(wheel_venv / "twistd"),
            "-n",
            "--pidfile=",
            "rpm",
            "--port",
            "0",
            "--state-dir",
            str(tmp_path / "s"),
            "--port-file",
            str(port_file),
        ],
        cwd="/",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        port = int(wait_for_file(port_file, process).split(":")[-1])
        assert talk(port, "PING", "EXIT")[1] == "OK pong"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)


@pytest.fixture
def nobody_dir():
    """A scratch directory the unprivileged user `nobody` owns (removed afterwards)."""
    import pwd
    import shutil
    import tempfile

    if os.geteuid() != 0:
        pytest.skip("needs root to run a server as another user")
    user = pwd.getpwnam("nobody")
    path = Path(tempfile.mkdtemp(prefix="rpm-nobody-"))
    path.chmod(0o755)
    os.chown(path, user.pw_uid, user.pw_gid)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_an_unprivileged_server_reports_what_the_system_refuses(nobody_dir, spawned):
    root_owned = subprocess.Popen(["sleep", "300"])
    spawned.append(root_owned.pid)
    port_file = nobody_dir / "port"
    command = [
        "setpriv",
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        str(BIN / "twistd"),
        "-n",
        "--pidfile=",
        "rpm",
        "--port",
        "0",
        "--state-dir",
        str(nobody_dir / "state"),
        "--port-file",
        str(port_file),
    ]
    server = subprocess.Popen(
        command,
        cwd=nobody_dir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        port = int(wait_for_file(port_file, server).split(":")[-1])
        token = (nobody_dir / "state/token").read_text().strip()
        lines = talk(
            port,
            f"AUTH {token}",
            f"STOP {root_owned.pid}",
            f"SIGNAL {root_owned.pid} HUP",
            "START sleep 300",
            "EXIT",
        )
        assert lines[2].startswith("ERR not-permitted"), lines
        assert lines[3].startswith("ERR not-permitted"), lines
        started = int(lines[4].split()[1])
        spawned.append(started)
        assert Path(f"/proc/{started}").stat().st_uid == 65534
        assert root_owned.poll() is None
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=10)


def test_a_unix_socket_listener_is_private_and_serves_local_reads(tmp_path):
    import shutil
    import tempfile

    short = Path(tempfile.mkdtemp(prefix="rpm-", dir="/tmp"))  # socket paths must be short
    socket_path = short / "rpm.sock"
    port_file = tmp_path / "port"
    process = subprocess.Popen(
        [
            str(BIN / "twistd"),
            "-n",
            "--pidfile=",
            "rpm",
            "--listen",
            f"unix:{socket_path}",
            "--state-dir",
            str(tmp_path / "s"),
            "--port-file",
            str(port_file),
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert wait_for_file(port_file, process).strip() == str(socket_path)
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
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
        shutil.rmtree(short, ignore_errors=True)
