"""Fixtures: a real rpm server in this process on an ephemeral port, cleaned up afterwards."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from rpm.server.config import ServerConfig
from rpm.server.service import RPMService
from tests.servers import BIN, ServerRunner
from tests.support import kill_tree
from tests.tmux import Tmux

# A suite started in the background (`make test &` in a script) is handed SIGINT ignored,
# and every program it starts would inherit that: rpmctl and rpm-tui would rightly ignore
# the Ctrl-C their tests send. Handled here, it is at its default in what the tests start.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


class RunningServer:
    """An RPMService listening on 127.0.0.1:<port>, with its token and state directory."""

    def __init__(self, service: RPMService):
        self.service = service
        self.core = service.core
        self.port = service.ports[0].getHost().port
        self.token = service.core.token
        self.state_dir = service.config.state_dir

    def managed_pids(self) -> list[int]:
        return [m.record.pid for m in self.core.supervisor.running()]


def start_server(state_dir, **overrides) -> RunningServer:
    config = ServerConfig(listen=["tcp:0:interface=127.0.0.1"], state_dir=str(state_dir))
    for key, value in overrides.items():
        setattr(config, key, value)
    service = RPMService(config, reactor)
    service.startService()
    return RunningServer(service)


def stop_server(server: RunningServer) -> None:
    """Kill what the server started (by pid, groups it leads), then stop it."""
    for pid in server.managed_pids():
        kill_tree(pid)
    server.core.supervisor.cancel_restarts()
    pytest_twisted.blockon(defer.maybeDeferred(server.service.stopService))


@pytest.fixture
def make_server(tmp_path):
    """Start servers with ServerConfig overrides; all are stopped at the end of the test."""
    servers = []

    def make(**overrides) -> RunningServer:
        state_dir = overrides.pop("state_dir", tmp_path / f"state{len(servers)}")
        server = start_server(state_dir, **overrides)
        servers.append(server)
        return server

    yield make
    for server in servers:
        with contextlib.suppress(Exception):
            stop_server(server)


@pytest.fixture
def server(make_server) -> RunningServer:
    return make_server()


@pytest.fixture
def spawned():
    """Pids of processes a test starts itself: SIGKILLed at the end whatever happens, and
    reaped if they are the test's children (a zombie left would be reaped by whatever waits
    on any child next: mutmut's runner, which then fails on a pid it did not start)."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            assert pid > 1
            os.kill(pid, signal.SIGKILL)
    for pid in pids:
        deadline = time.monotonic() + 10
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(pid, os.WNOHANG) == (0, 0) and time.monotonic() < deadline:
                time.sleep(0.01)


@pytest.fixture
def sleeper(spawned):
    """A child of the test, `sleep 60`, killed and reaped at the end whatever happens."""
    child = subprocess.Popen(["sleep", "60"])
    spawned.append(child.pid)
    yield child
    child.kill()
    child.wait(timeout=10)


@pytest.fixture
def server_runner(tmp_path):
    """Runs real `twistd rpm` processes; all are stopped at the end of the test."""
    runner = ServerRunner(tmp_path)
    yield runner
    runner.stop_all()


@pytest.fixture
def run_server(server_runner):
    return server_runner.run


@pytest.fixture
def terminal(tmp_path):
    """Open rpm-tui in tmux: terminal(*args) -> Tmux; closed at the end of the test."""
    opened: list[Tmux] = []

    def open_tui(*args: str, width: int = 110, height: int = 30, env=None) -> Tmux:
        environment = {"XDG_STATE_HOME": str(tmp_path / "tui-state"), "TERM": "xterm"}
        environment.update(env or {})
        tmux = Tmux(
            [str(BIN / "rpm-tui"), *args, "--log-file", str(tmp_path / "tui.log")],
            width,
            height,
            env=environment,
        )
        opened.append(tmux)
        return tmux

    yield open_tui
    for tmux in opened:
        tmux.close()
