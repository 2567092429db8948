"""Real rpm servers as separate processes (twistd from the installed package), for tests
that need to kill, restart or drive one from another program."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from rpm.server.managed.cgroups import ProgramCgroups
from rpm.server.managed.store import Store
from rpm.server.procs.identity import alive_with_start
from rpm.server.service import state_marker
from tests.support import kill_tree

BIN = Path(sys.executable).parent
PROJECT = Path(__file__).resolve().parents[1]


def talk(port: int, *lines: str, host: str = "127.0.0.1", timeout: float = 10.0) -> list[str]:
    """Send lines over a fresh connection; return everything received until it closes."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall("".join(f"{line}\r\n" for line in lines).encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.decode().split("\r\n")[:-1]


def wait_for_file(path: Path, process: subprocess.Popen, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().endswith("\n"):
            return path.read_text()
        if process.poll() is not None:
            raise AssertionError(
                f"server exited with {process.returncode}: {process.stderr.read()}"
            )
        time.sleep(0.05)
    raise AssertionError(f"{path} did not appear")


class ServerProcess:
    """A running `twistd rpm`: its process, first listening address and state directory."""

    def __init__(self, process: subprocess.Popen, address: str, state_dir: Path, log: Path):
        self.process, self.address, self.state_dir, self.log = process, address, state_dir, log

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    @property
    def token(self) -> str:
        return (self.state_dir / "token").read_text().strip()


def kill_managed(state_dir: Path) -> None:
    """SIGKILL the live managed processes a state directory's registry knows (each leads its
    own process group; pid and start time must both match, so a reused pid is left alone)."""
    database = state_dir / "rpm.db"
    records = []
    if database.exists():
        with contextlib.suppress(sqlite3.DatabaseError):
            store = Store(str(database))
            try:
                records = store.records(only_unfinished=True)
            finally:
                store.close()
    for record in records:
        if record.pid and record.pid > 1 and alive_with_start(record.pid, record.started):
            kill_tree(record.pid)
    remove_cgroups(state_dir)


def remove_cgroups(state_dir: Path) -> None:
    """Kill what is left in the cgroups of a state directory's programs, and remove them."""
    groups = ProgramCgroups.create(state_marker(str(state_dir)))
    if groups is None:
        return
    names = [name for name in os.listdir(groups.base) if name.startswith("program-")]
    ids = [int(name.split("-", 1)[1]) for name in names]
    for managed_id in ids:
        groups.kill(managed_id)
    deadline = time.monotonic() + 10
    while any(groups.populated(i) for i in ids) and time.monotonic() < deadline:
        time.sleep(0.05)
    groups.tidy()


class ServerRunner:
    """Starts `twistd -n rpm` (or another runner) in its own session; stop_all() ends them."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.started: list[subprocess.Popen] = []
        self.state_dirs: list[Path] = []

    def run(
        self,
        *extra: str,
        runner: tuple = ("twistd", "-n", "--pidfile="),
        port: int = 0,
        state_dir: Path | None = None,
        env: dict | None = None,
        prefix: tuple = (),
        pass_fds: tuple = (),
    ) -> ServerProcess:
        """Start a server (`prefix` goes before the command, as setpriv would) and wait until it
        listens; `runner[0]` is found beside this Python unless it is an absolute path."""
        count = len(self.started)
        state_dir = state_dir or self.directory / f"state{count}"
        port_file = self.directory / f"port{count}"
        command = [
            *prefix,
            str(BIN / runner[0]),
            *runner[1:],
            "rpm",
            "--port",
            str(port),
            "--state-dir",
            str(state_dir),
            "--port-file",
            str(port_file),
            *extra,
        ]
        log = self.directory / f"server{count}.log"  # a pipe nobody reads would fill up
        with open(log, "w") as output:
            process = subprocess.Popen(
                command,
                env=env,
                cwd=self.directory,
                stdout=output,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
                pass_fds=pass_fds,
            )
        self.started.append(process)
        if state_dir not in self.state_dirs:
            self.state_dirs.append(state_dir)
        address = wait_for_file(port_file, process).splitlines()[0]
        return ServerProcess(process, address, state_dir, log)

    def stop_all(self) -> None:
        """Stop every server, then kill what they left running (managed processes outlive
        their server by design)."""
        for process in self.started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)
        for state_dir in self.state_dirs:
            kill_managed(state_dir)


def run_tui_once(log_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """Run rpm-tui for a case where it must stop before taking the screen."""
    command = [str(BIN / "rpm-tui"), *args, "--log-file", str(log_dir / "tui.log")]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
