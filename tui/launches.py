"""The launch dialog's history: each program launched before, with its directory, restart
policy and environment, kept between sessions in the TUI's state directory (mode 0600, since
environment values may be secrets)."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass

MAX_ENTRIES = 200


@dataclass(frozen=True)
class Launch:
    """What the launch dialog's fields held when a program was started."""

    command: str
    cwd: str = ""
    restart: str = "no"
    env: str = ""  # NAME=VALUE words, as typed
    name: str = ""  # the program's name (START --name), if one was given


def _parse_entry(line: str) -> Launch:
    """A saved line: a JSON object, or (as older versions wrote) a bare command."""
    with contextlib.suppress(ValueError, TypeError):
        fields = json.loads(line)
        if isinstance(fields, dict) and isinstance(fields.get("command"), str):
            keys = ("cwd", "restart", "env", "name")
            known = {key: str(fields[key]) for key in keys if key in fields}
            return Launch(fields["command"], **known)
    return Launch(line)


class LaunchHistory:
    """Launches, oldest first; saved to `path` (if any) after each addition."""

    def __init__(self, path: str | None = None):
        self.path = path
        self.entries: list[Launch] = []
        if path:
            with contextlib.suppress(OSError), open(path, encoding="utf-8") as handle:
                self.entries = [_parse_entry(line.rstrip("\n")) for line in handle if line.strip()]

    def add(self, launch: Launch) -> None:
        self.entries = [entry for entry in self.entries if entry.command != launch.command]
        self.entries.append(launch)
        del self.entries[:-MAX_ENTRIES]
        if self.path:
            with contextlib.suppress(OSError):  # a history not saved only costs convenience
                self._save()

    def _save(self) -> None:
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(descriptor, 0o600)
        with open(descriptor, "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(asdict(entry)) + "\n" for entry in self.entries)
