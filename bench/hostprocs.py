"""Extra processes on the host, so the process table is as big as a busy server's."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


class HostProcesses:
    """`count` idle `sleep` processes, all killed (by pid) when the context ends."""

    def __init__(self, count: int):
        self.count = count
        self.pids: list[int] = []

    def resize(self, count: int) -> None:
        """Add or remove sleeps until there are `count` of them."""
        while len(self.pids) < count:
            process = subprocess.Popen(
                ["sleep", "86400"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.pids.append(process.pid)
        while len(self.pids) > count:
            self._kill(self.pids.pop())

    @staticmethod
    def _kill(pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)

    def __enter__(self) -> HostProcesses:
        self.resize(self.count)
        return self

    def __exit__(self, *exc) -> None:
        self.resize(0)
