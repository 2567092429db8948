"""Drive a real program in a real terminal: tmux on a private socket, keys in, screen out."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import tempfile
import time
import uuid

import pyte
import pytest


class Tmux:
    """One tmux server (own socket) with one pane running a command."""

    def __init__(self, command: list[str], width: int = 100, height: int = 30, env=None):
        if shutil.which("tmux") is None:
            pytest.skip("tmux is not installed (.ci/run installs it)")
        self.socket = f"rpm-test-{uuid.uuid4().hex[:12]}"
        self._scratch = tempfile.mkdtemp(prefix="rpm-tmux-")
        self._status = os.path.join(self._scratch, "status")
        environment = " ".join(f"{key}={value}" for key, value in (env or {}).items())
        program = f"{environment} {subprocess.list2cmdline(command)}".strip()
        # The shell reaps the program and writes its status: tmux can mark a pane dead long
        # before it reaps the process (tmux/tmux#4841), leaving the status unknown meanwhile.
        shell = f"{program}; echo $? > {shlex.quote(self._status)}"
        # Our own config, so the pane runs /bin/sh whatever the user's login shell is.
        self._config = os.path.join(self._scratch, "tmux.conf")
        with open(self._config, "w", encoding="utf-8") as config:
            config.write("set -g default-shell /bin/sh\n")
        try:
            size = ("-x", str(width), "-y", str(height))
            self._tmux("new-session", "-d", "-s", "main", *size, shell)
            self._tmux("set-option", "-t", "main", "remain-on-exit", "on")
        except BaseException:
            self.close()
            raise

    def _tmux(self, *args: str) -> str:
        result = subprocess.run(
            ["tmux", "-L", self.socket, "-f", self._config, *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return result.stdout

    def send(self, *keys: str) -> None:
        for key in keys:
            self._tmux("send-keys", "-t", "main", key)
            time.sleep(0.15)

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", "main", "-l", text)
        time.sleep(0.15)

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "main")

    def attributes(self) -> pyte.Screen:
        """The screen with each cell's colours and attributes, read from `capture-pane -e`."""
        width, height = (
            int(n)
            for n in self._tmux(
                "display-message", "-p", "-t", "main", "#{pane_width} #{pane_height}"
            ).split()
        )
        screen = pyte.Screen(width, height)
        stream = pyte.Stream(screen)
        captured = self._tmux("capture-pane", "-e", "-N", "-p", "-t", "main")
        stream.feed(captured.rstrip("\n").replace("\n", "\r\n"))
        return screen

    def wait_for(self, predicate, timeout: float = 15.0) -> str:
        """Wait until predicate(screen text) is true (a string means: appears on screen)."""
        check = (lambda text: predicate in text) if isinstance(predicate, str) else predicate
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if check(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {predicate!r}; screen:\n{text}")
            time.sleep(0.1)

    def exit_status(self, timeout: float = 10.0) -> int:
        """The program's exit status once it ended (-N if a signal N killed it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError), open(self._status) as status_file:
                status = status_file.read()
                if status.endswith("\n"):
                    code = int(status)
                    return 128 - code if code > 128 else code  # the shell's 128+N for signal N
            time.sleep(0.1)
        raise AssertionError(f"the program did not exit; screen:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run(
            ["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10, check=False
        )
        shutil.rmtree(self._scratch, ignore_errors=True)
