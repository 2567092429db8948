"""Keep a managed process's log within a size cap without losing what it writes meanwhile.

The child appends to its log file itself (O_APPEND), so the file cannot be renamed away or
truncated safely under it. Instead, when the live data grows past the cap, all but its
newest half is cut: the last cap's worth of the cut part is copied to `<file>.1` (replacing
the previous one; anything older is dropped), then the cut part is punched out of the live file
(fallocate PUNCH_HOLE, KEEP_SIZE): the disk blocks are freed while offsets stay as they
were, so the child, followers and the order journal never see a jump. `<file>.cut` says
which offsets `<file>.1` holds. Where holes cannot be punched, the file is copied and
truncated instead (a line written in that instant can be lost). Blocking I/O: run it in a
worker thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
from typing import NamedTuple

FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 0x01, 0x02
LINE_SEARCH = 65536
_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong)


class Cut(NamedTuple):
    """`<file>.1` holds offsets [first, end) of the stream; the live file starts at `end`
    (or, after a truncation, holds offsets from 0 again)."""

    first: int
    end: int
    truncated: bool = False


def punch_hole(fd: int, offset: int, length: int) -> bool:
    """Free [offset, offset+length) keeping the size; False where the filesystem cannot."""
    if _libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(code, os.strerror(code))


def read_cut(path: str) -> Cut | None:
    try:
        with open(path + ".cut", encoding="ascii") as handle:
            first, end, truncated = handle.read().split()
        return Cut(int(first), int(end), truncated == "1")
    except (OSError, ValueError):
        return None


def live_start(path: str) -> int:
    """Where the live file's data begins (after the last cut, if it was punched)."""
    cut = read_cut(path)
    return cut.end if cut is not None and not cut.truncated else 0


def _line_boundary(fd: int, target: int, floor: int) -> int:
    """The offset just after the last newline before target (or target if none is near)."""
    start = max(floor, target - LINE_SEARCH)
    chunk = os.pread(fd, target - start, start)
    newline = chunk.rfind(b"\n")
    return start + newline + 1 if newline >= 0 else target


def _next_line(fd: int, target: int, ceiling: int) -> int:
    """The offset where the first line starting at or after target begins (or target)."""
    chunk = os.pread(fd, min(LINE_SEARCH, ceiling - target), target)
    newline = chunk.find(b"\n")
    return target + newline + 1 if newline >= 0 else target


def _copy(source: int, destination: int, offset: int, count: int) -> None:
    while count > 0:
        copied = os.copy_file_range(source, destination, count, offset)
        if copied == 0:
            break
        offset += copied
        count -= copied


def rotate(path: str, max_bytes: int) -> Cut | None:
    """If the live data of path exceeds max_bytes, keep its newest half live, the max_bytes
    before it in path.1, and drop anything older; returns the new Cut, or None."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        start, size = live_start(path), os.fstat(fd).st_size
        if size - start <= max_bytes:
            return None
        end = _line_boundary(fd, size - max_bytes // 2, start)
        first = _next_line(fd, end - max_bytes, end) if end - start > max_bytes else start
        backup = os.open(
            path + ".1.tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600
        )
        try:
            _copy(fd, backup, first, end - first)
        finally:
            os.close(backup)
        os.replace(path + ".1.tmp", path + ".1")
        cut = Cut(first, end)
        _write_cut(path, cut)  # readers behind `end` now go to path.1, before the data goes
        if not punch_hole(fd, 0, end):
            _copy_rest_and_truncate(fd, path, end, size)
            cut = Cut(first, size, truncated=True)
            _write_cut(path, cut)
        return cut
    finally:
        os.close(fd)


def _copy_rest_and_truncate(fd: int, path: str, end: int, size: int) -> None:
    with open(path + ".1", "ab") as backup:
        backup.write(os.pread(fd, size - end, end))
    os.ftruncate(fd, 0)


def _write_cut(path: str, cut: Cut) -> None:
    with open(path + ".cut.tmp", "w", encoding="ascii") as handle:
        handle.write(f"{cut.first} {cut.end} {int(cut.truncated)}\n")
    os.replace(path + ".cut.tmp", path + ".cut")


def read_from(path: str, start: int, size: int) -> tuple[int, bytes]:
    """Up to size bytes of the stream from offset start, from path.1 if start was rotated
    out of the live file; returns (offset the data really starts at, data)."""
    cut = read_cut(path)
    if cut is not None and not cut.truncated and start < cut.end:
        start = max(start, cut.first)  # older than the kept generation: gone
        with contextlib.suppress(FileNotFoundError), open(path + ".1", "rb") as backup:
            backup.seek(start - cut.first)
            return start, backup.read(min(size, cut.end - start))
        start = cut.end
    try:
        with open(path, "rb") as handle:
            handle.seek(start)
            return start, handle.read(size)
    except FileNotFoundError:
        return start, b""
