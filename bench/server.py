"""A real rpm server (twistd) for the benchmarks, and what it costs the machine."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

BIN = Path(sys.executable).parent


class BenchServer:
    """`twistd -n rpm` on an ephemeral port, with limits raised for load tests."""

    def __init__(self, *extra: str):
        self.directory = Path(tempfile.mkdtemp(prefix="rpm-bench-"))
        port_file = self.directory / "port"
        command = [
            str(BIN / "twistd"),
            "-n",
            "--pidfile=",
            "--logfile",
            str(self.directory / "log"),
            "rpm",
            "--port",
            "0",
            "--state-dir",
            str(self.directory / "state"),
            "--port-file",
            str(port_file),
            "--max-connections",
            "5000",
            "--max-connections-per-peer",
            "5000",
            "--max-managed",
            "100000",
            *extra,
        ]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().endswith("\n")):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the rpm server did not start")
            time.sleep(0.05)
        self.port = int(port_file.read_text().split(":")[-1])
        self.token = (self.directory / "state" / "token").read_text().strip()
        self.psutil = psutil.Process(self.process.pid)

    def cpu_seconds(self) -> float:
        times = self.psutil.cpu_times()
        return times.user + times.system

    def memory(self) -> int:
        """Unique set size: the memory that belongs to the server alone."""
        return self.psutil.memory_full_info().uss

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> BenchServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
