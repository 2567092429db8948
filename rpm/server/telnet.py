"""Strip telnet control sequences (IAC ...) from a byte stream before it is split into lines.

Telnet clients send IAC (0xFF) commands: option negotiation (IAC WILL/WONT/DO/DONT <opt>),
subnegotiation (IAC SB ... IAC SE) and one-byte commands such as IAC IP on Ctrl-C. None of
them is a request, so they are removed; IAC IAC stands for a literal 0xFF byte. The filter
keeps its state between calls, so a sequence split across TCP packets is still removed.
A line feed always stays data and ends any sequence in progress: however malformed the
telnet bytes, they can never join two requests into one or swallow a request.
"""

IAC, SB, SE = 255, 250, 240
LF = 10
WILL, WONT, DO, DONT = 251, 252, 253, 254

_DATA, _COMMAND, _OPTION, _SUB, _SUB_IAC = range(5)
# The state after IAC <byte>: an option byte follows WILL/WONT/DO/DONT; SB opens a block.
_AFTER_COMMAND = {WILL: _OPTION, WONT: _OPTION, DO: _OPTION, DONT: _OPTION, SB: _SUB}


class TelnetFilter:
    """Feed raw bytes in, get the request bytes out (pure, stateful across calls)."""

    def __init__(self) -> None:
        self._state = _DATA

    def feed(self, data: bytes) -> bytes:
        if self._state == _DATA and IAC not in data:
            return data
        out = bytearray()
        for byte in data:
            self._state = self._step(self._state, byte, out)
        return bytes(out)

    @staticmethod
    def _step(state: int, byte: int, out: bytearray) -> int:
        if state == _DATA or byte == LF:
            if byte != IAC:
                out.append(byte)
            return _COMMAND if byte == IAC else _DATA
        if state == _COMMAND:
            if byte == IAC or byte < SE:  # IAC IAC is a 0xFF data byte; IAC <not a command>
                out.append(byte)  # keeps the byte, dropping the stray IAC
            return _AFTER_COMMAND.get(byte, _DATA)
        if state == _OPTION:
            return _DATA
        if state == _SUB:
            return _SUB_IAC if byte == IAC else _SUB
        # _SUB_IAC: IAC SE ends the subnegotiation; IAC IAC is an escaped 0xFF inside it.
        return _DATA if byte == SE else _SUB
