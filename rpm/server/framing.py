"""Request lines from a byte stream, as the contract frames them (pure): telnet control
sequences removed first, a line ends at LF with any CR before it dropped, at most MAX_LINE
bytes (a longer one is answered once and discarded up to its LF), and UTF-8 checked.

    framer = Framer()
    for item in framer.feed(data):   # a str request, or a FramingError to answer
        ...
    framer.finish()                  # at end of input: the unterminated last line, if any

Blank lines (empty, or only spaces and tabs) are no requests and come out as nothing.
"""

from __future__ import annotations

from rpm.errors import BadEncoding, LineTooLong
from rpm.server.telnet import TelnetFilter

MAX_LINE = 65536


FramingError = LineTooLong | BadEncoding  # a line that cannot be a request, and its answer
TOO_LONG = LineTooLong(f"a request line may be at most {MAX_LINE} bytes; the line was discarded")


class Framer:
    """Feed bytes in; get request lines (str) and framing errors out, in order."""

    def __init__(self, max_line: int = MAX_LINE):
        self._max_line = max_line
        self._telnet = TelnetFilter()
        self._partial = bytearray()
        self._discarding = False  # inside a too-long line, until its LF

    def feed(self, data: bytes) -> list[str | FramingError]:
        out: list[str | FramingError] = []
        data = self._telnet.feed(data)
        while data:
            end = data.find(b"\n")
            if self._discarding:
                if end < 0:
                    break
                self._discarding, data = False, data[end + 1 :]
                continue
            if end < 0:
                self._partial += data
                if len(self._partial) > self._max_line + 1:  # room for telnet's CR
                    self._partial.clear()
                    self._discarding = True
                    out.append(TOO_LONG)
                break
            self._partial += data[:end]
            data = data[end + 1 :]
            self._take_line(out)
        return out

    def finish(self) -> list[str | FramingError]:
        """The input ended: a last line without its LF is a request too."""
        out: list[str | FramingError] = []
        if self._partial and not self._discarding:
            self._take_line(out)
        self._partial.clear()
        return out

    def _take_line(self, out: list) -> None:
        line = bytes(self._partial).removesuffix(b"\r")
        self._partial.clear()
        item = request_of(line, self._max_line)
        if item is not None:
            out.append(item)


def request_of(line: bytes, max_line: int = MAX_LINE) -> str | FramingError | None:
    """One line's request text, its error, or None for a blank line."""
    if not line.strip(b" \t"):
        return None
    if len(line) > max_line:
        return TOO_LONG
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as err:
        return BadEncoding(f"the request is not valid UTF-8 (byte {err.start}); send UTF-8 text")
