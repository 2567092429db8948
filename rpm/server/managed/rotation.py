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

from rpm.server.procs.libc import LIBC

FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 0x01, 0x02
LINE_SEARCH = 65536
CONSISTENT_TRIES = 5  # reads of a cut and its file, while a log writer rotates
LIBC.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong)


class Cut(NamedTuple):
    """`<file>.1` holds offsets [first, end) of the stream; the live file starts at `end`
    (or, after a truncation, holds offsets from 0 again). A cut made by a log writer
    (logwriter.py) names the inodes of the live file and of `.1`: the live file then holds
    the stream from `end` at its own offset 0 (it was renamed, not punched)."""

    first: int
    end: int
    truncated: bool = False
    live_inode: int | None = None
    old_inode: int | None = None

    @property
    def renamed(self) -> bool:
        return self.live_inode is not None


def punch_hole(fd: int, offset: int, length: int) -> bool:
    """Free [offset, offset+length) keeping the size; False where the filesystem cannot."""
    if LIBC.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(code, os.strerror(code))


def read_cut(path: str) -> Cut | None:
    try:
        with open(path + ".cut", encoding="ascii") as handle:
            fields = handle.read().split()
        first, end, truncated = int(fields[0]), int(fields[1]), fields[2] == "1"
        if len(fields) == 5:
            return Cut(first, end, truncated, int(fields[3]), int(fields[4]))
        return Cut(first, end, truncated)
    except (OSError, ValueError, IndexError):
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
    for _ in range(CONSISTENT_TRIES):
        cut = read_cut(path)
        if cut is None or not cut.renamed:
            return _read_punched(path, cut, start, size)
        if start < cut.end:
            begin = max(start, cut.first)  # older than the kept generation: gone
            wanted = min(size, cut.end - begin)
            data = _read_inode(path + ".1", cut.old_inode, begin - cut.first, wanted)
            if data is not None:
                return begin, data
        else:
            data = _read_inode(path, cut.live_inode, start - cut.end, size)
            if data is not None:
                return start, data
    return start, b""  # rotating right now: nothing this time


def _read_inode(path: str, inode: int, offset: int, size: int) -> bytes | None:
    """size bytes at offset of path, if it is still the file with this inode."""
    try:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_ino != inode:
                return None
            return os.pread(handle.fileno(), size, offset)
    except FileNotFoundError:
        return None


def _read_punched(path: str, cut: Cut | None, start: int, size: int) -> tuple[int, bytes]:
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


def stream_size(path: str) -> int:
    """How far the stream has been written, in its own offsets (across renames)."""
    cut = None
    for _ in range(CONSISTENT_TRIES):
        try:
            info = os.stat(path)
        except FileNotFoundError:
            info = None
        cut = read_cut(path)
        if cut is None or not cut.renamed:
            return info.st_size if info is not None else 0
        if info is not None and info.st_ino == cut.live_inode:
            return cut.end + info.st_size
    return cut.end  # caught mid-rotation each time: at least this much


def live_base(path: str, fd: int) -> int | None:
    """Where the open live file fd begins in its stream: 0 unless a log writer renamed it
    (then the cut's end), None if the cut names another file (a rotation is under way)."""
    cut = read_cut(path)
    if cut is None or not cut.renamed:
        return 0
    return cut.end if os.fstat(fd).st_ino == cut.live_inode else None
