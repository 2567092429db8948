"""rpm-tui watching a fleet: real servers on loopback ports, the real rpm-tui in a
pseudo-terminal, and the CPU it uses while it only watches."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import shutil
import struct
import subprocess
import tempfile
import termios
import threading
import time
from pathlib import Path

import psutil

from bench.server import BenchServer
from tests.servers import BIN

CONNECT_SECONDS = 300.0  # 50 servers answer their first tables on a busy machine in this


def tui_idle_cpu(hosts: int, seconds: float) -> dict[str, float]:
    """rpm-tui --hosts with `hosts` servers: its CPU (cores) over `seconds` of watching once
    every server's first table is in, the bytes it read a second (what it was sent), its
    memory, and the servers' CPU meanwhile."""
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(BenchServer()) for _ in range(hosts)]
        directory = Path(tempfile.mkdtemp(prefix="rpm-bench-fleet-"))
        stack.callback(shutil.rmtree, directory, ignore_errors=True)
        tui = stack.enter_context(_tui_in_a_terminal(_fleet_file(directory, servers)))
        _wait_until_connected(tui, hosts)
        time.sleep(5.0)  # the first tables: 100,000 rows to take in before watching idles
        before_tui, before_servers = _cpu(tui), sum(server.cpu_seconds() for server in servers)
        before_read, began = _bytes_received(tui.pid), time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - began
        return {
            "tui_cores": (_cpu(tui) - before_tui) / elapsed,
            "tui_read_per_second": (_bytes_received(tui.pid) - before_read) / elapsed,
            "tui_memory": tui.memory_info().rss,
            "servers_cores": (sum(s.cpu_seconds() for s in servers) - before_servers) / elapsed,
        }


def _fleet_file(directory: Path, servers: list[BenchServer]) -> Path:
    """A fleet file naming each server node00, node01, ..., each with its own token file."""
    lines = []
    for number, server in enumerate(servers):
        token = directory / f"node{number:02d}.token"
        token.write_text(server.token)
        token.chmod(0o600)
        lines += [
            f"[hosts.node{number:02d}]",
            f'address = "127.0.0.1:{server.port}"',
            f'token_file = "{token}"',
            "",
        ]
    fleet = directory / "fleet.toml"
    fleet.write_text("\n".join(lines))
    return fleet


@contextlib.contextmanager
def _tui_in_a_terminal(fleet: Path):
    """rpm-tui in a 160x50 pseudo-terminal whose output is read and dropped."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    process = subprocess.Popen(
        [str(BIN / "rpm-tui"), "--hosts", str(fleet), "--log-file", str(fleet.parent / "tui.log")],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "TERM": "xterm-256color"},
        start_new_session=True,
    )
    os.close(slave)
    reader = threading.Thread(target=_drain, args=(master,), daemon=True)
    reader.start()
    try:
        yield psutil.Process(process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
        os.close(master)
        reader.join(timeout=5)


def _drain(master: int) -> None:
    with contextlib.suppress(OSError):
        while os.read(master, 65536):
            pass


def _wait_until_connected(tui: psutil.Process, hosts: int) -> None:
    deadline = time.monotonic() + CONNECT_SECONDS
    while sum(c.status == psutil.CONN_ESTABLISHED for c in tui.net_connections("tcp")) < hosts:
        if time.monotonic() > deadline:
            raise RuntimeError(f"rpm-tui did not connect to all {hosts} servers in time")
        time.sleep(0.5)


def _bytes_received(pid: int) -> int:
    """What a process's established TCP connections received so far (iproute2's ss)."""
    listing = subprocess.run(
        ["ss", "-tinpH", "state", "established"], capture_output=True, text=True, check=True
    ).stdout
    total, ours = 0, False
    for line in listing.splitlines():
        if not line[:1].isspace():  # a socket's line, with its process; its details follow
            ours = f"pid={pid}," in line
        elif ours and (found := re.search(r"bytes_received:(\d+)", line)):
            total += int(found.group(1))
    return total


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system
