"""Replies and events as bytes on the wire, in text or JSON mode (pure).

Text mode: `OK ...` or `ERR <code> <message>` lines, bodies ended by a lone `.` with
dot-stuffing, events prefixed `* `. Nothing taken from a process (names, command lines,
output) reaches a text-mode client raw: control and other non-printable characters are
shown as escapes. JSON mode: one object per line, ASCII only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

CRLF = b"\r\n"
TEXT, JSON = "text", "json"


def _escape_char(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape_text(text: str) -> str:
    """Show control, format and separator characters as \\xNN / \\uNNNN escapes."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escape_char(char) for char in text)


def text_line(text: str) -> bytes:
    """One escaped text-mode line with its CRLF."""
    return escape_text(text).encode("utf-8") + CRLF


def ok_line(text: str = "") -> bytes:
    return text_line(f"OK {text}" if text else "OK")


def err_line(code: str, message: str) -> bytes:
    return text_line(f"ERR {code} {message}")


def stuffed(line: str) -> bytes:
    """A body line, escaped and dot-stuffed (a leading `.` gets one more)."""
    escaped = escape_text(line)
    if escaped.startswith("."):
        escaped = "." + escaped
    return escaped.encode("utf-8") + CRLF


def body_block(head: bytes, lines: Iterable[str]) -> bytes:
    """A first line, the body lines, then the terminating `.` line."""
    return b"".join((head, *(stuffed(line) for line in lines), b"." + CRLF))


def json_bytes(obj) -> bytes:
    """Compact ASCII JSON: ensure_ascii escapes everything outside space to tilde, DEL and
    every control byte included, so none is ever sent raw."""
    return json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def json_line(obj) -> bytes:
    return json_bytes(obj) + CRLF


class Reply:
    """Something the server answers to one request; renders itself per mode."""

    def render(self, mode: str) -> bytes:
        raise NotImplementedError


@dataclass
class Ok(Reply):
    """A one-line success: `OK <text>` in text mode, `{"ok": true, **fields}` in JSON."""

    text: str = ""
    fields: dict = field(default_factory=dict)

    def render(self, mode: str) -> bytes:
        if mode == JSON:
            return json_line({"ok": True, **self.fields})
        return ok_line(self.text)


@dataclass
class Body(Reply):
    """A success with a body: `OK <count> <noun>`, the lines, `.`; or one JSON object."""

    count: int
    noun: str
    lines: list[str]
    fields: dict = field(default_factory=dict)

    def render(self, mode: str) -> bytes:
        if mode == JSON:
            return json_line({"ok": True, **self.fields})
        return body_block(ok_line(f"{self.count} {self.noun}"), self.lines)


@dataclass
class Error(Reply):
    """`ERR <code> <message>`, or `{"ok": false, "error": code, "message": ...}`."""

    code: str
    message: str

    def render(self, mode: str) -> bytes:
        if mode == JSON:
            return json_line({"ok": False, "error": self.code, "message": self.message})
        return err_line(self.code, self.message)


@dataclass
class Event:
    """A pushed event: `* <name> <text>` (optionally with a body) or `{"event": name, ...}`."""

    name: str
    text: str
    fields: dict = field(default_factory=dict)
    lines: list[str] | None = None

    def render(self, mode: str) -> bytes:
        if mode == JSON:
            return json_line({"event": self.name, **self.fields})
        head = text_line(f"* {self.name} {self.text}".rstrip())
        return head if self.lines is None else body_block(head, self.lines)
