"""A real rpm server (twistd, started by the tests' own runner) for the benchmarks, with
limits raised for load, and what it costs the machine."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import psutil

from tests.servers import ServerRunner

LOAD_LIMITS = (
    "--max-connections",
    "5000",
    "--max-connections-per-peer",
    "5000",
    "--max-managed",
    "100000",
)


class BenchServer:
    """`twistd -n rpm` on an ephemeral port, with limits raised for load tests."""

    def __init__(self, *extra: str):
        self.directory = Path(tempfile.mkdtemp(prefix="rpm-bench-"))
        self._runner = ServerRunner(self.directory)
        try:
            server = self._runner.run(*LOAD_LIMITS, *extra)
        except BaseException:
            self.stop()
            raise
        self.process, self.port, self.token = server.process, server.port, server.token
        self.psutil = psutil.Process(server.process.pid)

    def cpu_seconds(self) -> float:
        times = self.psutil.cpu_times()
        return times.user + times.system

    def memory(self) -> int:
        """Unique set size: the memory that belongs to the server alone."""
        return self.psutil.memory_full_info().uss

    def stop(self) -> None:
        """Stop the server and whatever it left running, and remove its files."""
        self._runner.stop_all()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> BenchServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
