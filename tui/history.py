"""The launch dialog's command history, kept between sessions in the TUI's state directory."""

from __future__ import annotations

import os

MAX_ENTRIES = 200


class History:
    """Commands launched before, oldest first; saved to `path` (if any) after each addition."""

    def __init__(self, path: str | None = None):
        self.path = path
        self.entries: list[str] = []
        if path:
            try:
                with open(path, encoding="utf-8") as handle:
                    self.entries = [line.rstrip("\n") for line in handle if line.strip()]
            except OSError:
                pass

    def add(self, command: str) -> None:
        if command in self.entries:
            self.entries.remove(command)
        self.entries.append(command)
        del self.entries[:-MAX_ENTRIES]
        if self.path:
            try:
                os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
                with open(self.path, "w", encoding="utf-8") as handle:
                    handle.writelines(entry + "\n" for entry in self.entries if "\n" not in entry)
            except OSError:
                pass  # a history that cannot be saved only costs convenience
