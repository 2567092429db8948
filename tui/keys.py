"""Every key the TUI understands, as data: what it does and how the help screen says it."""

from __future__ import annotations

# (keys, command, description); a command is an App method name plus an optional argument.
BINDINGS: list[tuple[tuple[str, ...], str | None, str]] = [
    (("up", "down", "page up", "page down", "home", "end"), None, "move the selection"),
    (("/",), "filter", "filter by pid, user, name, program or command (Enter applies, Esc clears)"),
    (("P",), "sort cpu", "sort by CPU; again to reverse"),
    (("M",), "sort mem", "sort by memory; again to reverse"),
    (("N",), "sort pid", "sort by pid; again to reverse"),
    (("T",), "sort start", "sort by start time; again to reverse"),
    (("t",), "tree", "tree view: children under their parents"),
    (("h",), "kernel", "show or hide kernel threads (hidden at start)"),
    (("m",), "managed", "show only managed programs, or everything again"),
    (("v",), "vitals", "fold or unfold the machines' vitals above the table"),
    ((" ", "+", "-"), "collapse", "fold or unfold the selected branch (tree view)"),
    (("enter",), "detail", "details of the process, with CPU and memory over the last minute"),
    (("k",), "stop", "stop the process (asks first: y confirms)"),
    (("r",), "restart", "restart a managed program the same way (asks first: y confirms)"),
    (("K", "f9"), "signal", "send a signal chosen from a list"),
    (("p",), "pause", "pause the process, or resume it if paused"),
    (("n", "f2"), "launch", "launch a program (Up/Down: history)"),
    (("l",), "logs", "output of a managed process, live"),
    (("?", "f1"), "help", "this help"),
    (("esc",), None, "close a dialog or view; clears the filter"),
    (("q", "f10"), "quit", "quit"),
]

KEYMAP: dict[str, str] = {
    key: command for keys, command, _ in BINDINGS if command is not None for key in keys
}


def key_label(key: str) -> str:
    """How a key is written on the help screen."""
    names = {
        "page up": "PgUp",
        "page down": "PgDn",
        "enter": "Enter",
        "esc": "Esc",
        " ": "Space",
        "home": "Home",
        "end": "End",
        "up": "Up",
        "down": "Down",
    }
    if key.startswith("f") and key[1:].isdigit():
        return key.upper()
    return names.get(key, key)


def help_lines() -> list[tuple[str, str]]:
    """(keys, description) for the help screen, in binding order."""
    return [(" ".join(key_label(key) for key in keys), text) for keys, _, text in BINDINGS]
