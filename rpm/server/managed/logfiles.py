"""Managed processes' output files, and reading their last lines back in order.

Each managed program (by its registry id) has its stdout in `<id>.out` and its stderr in
`<id>.err` in the logs directory, written by its log writer (logwriter.py), a process that
outlives the server as the program does, so the output never depends on the server. The
two streams are told apart by file; their interleaving is recovered from `<id>.idx`, a
journal in which the server notes, as it watches, when each stream reached which size
(`<time> <o|e> <end>`). Reading functions here block (file I/O): call them from a worker
thread.
"""

from __future__ import annotations

import bisect
import contextlib
import math
import os
from typing import NamedTuple

from rpm.server.managed import rotation

STREAMS = ("stdout", "stderr")
_SUFFIX = {"stdout": "out", "stderr": "err"}
_JOURNAL_CODE = {"stdout": "o", "stderr": "e"}
_JOURNAL_STREAM = {"o": "stdout", "e": "stderr"}
BLOCK = 65536
MAX_TAIL_BYTES = 32 * 1024 * 1024
MAX_LINE_CHARS = 8192


class LogLine(NamedTuple):
    stream: str
    text: str
    end: int  # offset just past this line in its stream's file
    seen: float  # when the server first saw it (inf: not yet seen)


def data_start(fd: int) -> int:
    """Offset of the first byte not in a punched hole (rotated-away data reads as NULs)."""
    try:
        return os.lseek(fd, 0, os.SEEK_DATA)
    except OSError:  # ENXIO: all hole or empty; EINVAL: no SEEK_DATA support
        return 0


def _clean(raw: bytes) -> str:
    text = raw.rstrip(b"\r").decode("utf-8", "replace")
    if len(text) > MAX_LINE_CHARS:
        text = text[:MAX_LINE_CHARS] + f"\u2026 [{len(text) - MAX_LINE_CHARS} more characters]"
    return text


def _open_live(path: str):
    """The live file open for reading, and where it begins in its stream; None if missing."""
    for _ in range(rotation.CONSISTENT_TRIES):
        try:
            handle = open(path, "rb")  # noqa: SIM115 (the caller closes it)
        except FileNotFoundError:
            return None
        base = rotation.live_base(path, handle.fileno())
        if base is not None:
            return handle, base
        handle.close()  # a log writer is rotating it: try again
    return None


def last_lines(path: str, count: int, until: int | None = None) -> list[tuple[int, str]]:
    """The last `count` lines of a stream's live file (of the stream's first `until` bytes)
    as (end offset in the stream, text); a final partial line counts."""
    opened = _open_live(path) if count > 0 else None
    if opened is None:
        return []
    handle, base = opened
    with handle:
        size = handle.seek(0, os.SEEK_END)
        if until is not None:
            size = max(0, min(size, until - base))
        start = max(data_start(handle.fileno()), rotation.live_start(path) - base)
        floor = max(start, size - MAX_TAIL_BYTES)
        position, chunks, newlines = size, [], 0
        while position > floor and newlines <= count:
            step = min(BLOCK, position - floor)
            position -= step
            handle.seek(position)
            chunk = handle.read(step)
            chunks.append(chunk)
            newlines += chunk.count(b"\n")
    data = b"".join(reversed(chunks))
    lines, offset = [], position
    for index, raw in enumerate(data.split(b"\n")):
        end = offset + len(raw) + 1
        if index == 0 and position > floor:
            offset = end  # starts mid-line: not a whole line
            continue
        if end > size:  # the text after the last newline: a partial line, or nothing
            if raw:
                lines.append((base + size, _clean(raw)))
            break
        lines.append((base + end, _clean(raw.lstrip(b"\0") if offset == floor else raw)))
        offset = end
    return lines[-count:]


def _journal_records(path: str, needed: dict[str, int]) -> dict[str, tuple[list[int], list[float]]]:
    """Per stream, (ends, times) from the journal's tail, reaching back past needed[stream]."""
    records: dict[str, list[tuple[int, float]]] = {stream: [] for stream in STREAMS}
    try:
        handle = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        return {stream: ([], []) for stream in STREAMS}
    with handle:
        position = handle.seek(0, os.SEEK_END)
        carry = b""
        while position > 0:
            step = min(BLOCK, position)
            position -= step
            handle.seek(position)
            chunk = handle.read(step) + carry
            first, _, rest = chunk.partition(b"\n") if position else (b"", b"", chunk)
            carry = first
            for line in reversed(rest.split(b"\n")):
                _parse_record(line, records)
            if all(
                s not in needed or (records[s] and records[s][-1][0] < needed[s]) for s in STREAMS
            ):
                break
    return {
        stream: ([end for end, _ in reversed(items)], [when for _, when in reversed(items)])
        for stream, items in records.items()
    }


def _parse_record(line: bytes, records: dict) -> None:
    parts = line.split()
    if len(parts) == 3 and parts[1].decode(errors="replace") in _JOURNAL_STREAM:
        with contextlib.suppress(ValueError):  # a record torn by a crash mid-write: skip it
            records[_JOURNAL_STREAM[parts[1].decode()]].append((int(parts[2]), float(parts[0])))


def _rotated_away(line: str, code: str, cut: rotation.Cut) -> bool:
    parts = line.split()
    if len(parts) != 3 or parts[1] != code:
        return False
    return cut.truncated or not parts[2].isdigit() or int(parts[2]) <= cut.end


class LogFiles:
    """Paths, opening for a child, the order journal and reading back (blocking I/O)."""

    def __init__(self, directory: str):
        self.directory = directory
        os.makedirs(directory, mode=0o700, exist_ok=True)

    def path(self, managed_id: int, stream: str) -> str:
        return os.path.join(self.directory, f"{managed_id}.{_SUFFIX[stream]}")

    def journal_path(self, managed_id: int) -> str:
        return os.path.join(self.directory, f"{managed_id}.idx")

    def remove(self, managed_ids: list[int]) -> None:
        """Delete every file of these programs: their streams, rotated generations, journals
        and locks, in one pass over the directory (blocking: call it in a worker thread)."""
        gone = {str(managed_id) for managed_id in managed_ids}
        for name in os.listdir(self.directory):
            if name.partition(".")[0] in gone:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.directory, name))

    def open_for_child(self, managed_id: int) -> dict[int, int]:
        """The stdout (1) and stderr (2) files of a program, created if need be, open for it
        to write to itself (where its log writer cannot run); the caller closes them."""
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        out = os.open(self.path(managed_id, "stdout"), flags, 0o600)
        try:
            err = os.open(self.path(managed_id, "stderr"), flags, 0o600)
        except OSError:
            os.close(out)
            raise
        return {1: out, 2: err}

    def read(self, managed_id: int, stream: str, start: int, size: int) -> tuple[int, bytes]:
        """Up to size bytes of a stream from offset start (from the rotated generation if
        start was rotated out); returns the offset the data really starts at, and the data."""
        return rotation.read_from(self.path(managed_id, stream), start, size)

    def rotate(self, managed_id: int, stream: str, max_bytes: int) -> rotation.Cut | None:
        """Cap one stream's file (blocking: call it in a worker thread)."""
        return rotation.rotate(self.path(managed_id, stream), max_bytes)

    def rotated(self, managed_id: int) -> bool:
        """Whether the log cap has cut older output out of either stream's live file."""
        return any(self.cut(managed_id, stream) is not None for stream in STREAMS)

    def cut(self, managed_id: int, stream: str) -> rotation.Cut | None:
        """Where the last rotation of a stream cut it, if it was ever rotated."""
        return rotation.read_cut(self.path(managed_id, stream))

    def live_start(self, managed_id: int, stream: str) -> int:
        return rotation.live_start(self.path(managed_id, stream))

    def compact_journal(self, managed_id: int, stream: str, cut: rotation.Cut) -> None:
        """Drop journal records of data rotated out of a stream's live file."""
        path = self.journal_path(managed_id)
        code = _JOURNAL_CODE[stream]
        try:
            with open(path, encoding="ascii", errors="replace") as journal:
                records = journal.readlines()
        except FileNotFoundError:
            return
        kept = [line for line in records if not _rotated_away(line, code, cut)]
        with open(path + ".tmp", "w", encoding="ascii", errors="replace") as journal:
            journal.writelines(kept)
        os.replace(path + ".tmp", path)

    def sizes(self, managed_id: int) -> dict[str, int]:
        """How far each stream has been written (its offsets run on across rotations)."""
        return {stream: rotation.stream_size(self.path(managed_id, stream)) for stream in STREAMS}

    def note(self, managed_id: int, when: float, growth: dict[str, int]) -> None:
        """Journal that each stream in growth reached that size at time `when`."""
        text = "".join(
            f"{when:.3f} {_JOURNAL_CODE[stream]} {end}\n" for stream, end in growth.items()
        )
        with open(self.journal_path(managed_id), "a", encoding="ascii") as journal:
            journal.write(text)

    def journaled_sizes(self, managed_id: int) -> dict[str, int]:
        """The last size the journal recorded for each stream (0 if none)."""
        records = _journal_records(self.journal_path(managed_id), dict.fromkeys(STREAMS, math.inf))
        return {stream: (ends[-1] if ends else 0) for stream, (ends, _) in records.items()}

    def tail(
        self, managed_id: int, count: int, until: dict[str, int] | None = None
    ) -> list[LogLine]:
        """The last `count` lines of stdout and stderr (up to the sizes in `until`),
        interleaved as the server saw them."""
        until = until or {}
        per_stream = {s: last_lines(self.path(managed_id, s), count, until.get(s)) for s in STREAMS}
        needed = {s: lines[0][0] for s, lines in per_stream.items() if lines}
        journal = _journal_records(self.journal_path(managed_id), needed)
        merged = []
        for stream, lines in per_stream.items():
            ends, times = journal[stream]
            for end, text in lines:
                index = bisect.bisect_left(ends, end)
                merged.append(
                    LogLine(stream, text, end, times[index] if index < len(ends) else math.inf)
                )
        merged.sort(key=lambda line: (line.seen, STREAMS.index(line.stream), line.end))
        return merged[-count:] if count else []
