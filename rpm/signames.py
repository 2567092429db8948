"""Signal names and numbers as clients write them: `HUP`, `SIGHUP`, `1`, `RTMIN+2` (pure)."""

import re
import signal

from rpm.errors import BadArgument

_VALID = frozenset(signal.valid_signals()) - {0}
_RTMIN = int(getattr(signal, "SIGRTMIN", 0))
_RTMAX = int(getattr(signal, "SIGRTMAX", 0))
_RT_NAME = re.compile(r"RTM(IN|AX)([+-][0-9]+)?", re.ASCII)


def _by_name(name: str) -> int | None:
    """Look a bare upper-case name (no SIG prefix) up, real-time offsets included."""
    member = signal.Signals.__members__.get("SIG" + name)
    if member is not None:
        return int(member)
    match = _RT_NAME.fullmatch(name)
    if match is None or not _RTMIN:
        return None
    base = _RTMIN if match.group(1) == "IN" else _RTMAX
    return base + int(match.group(2) or 0)


def parse_signal(text: str) -> int:
    """Return the signal number for a name or number, or raise BadArgument."""
    if text.isascii() and text.isdigit():
        number = int(text)
    else:
        name = text.upper() if text.isascii() else ""
        name = name.removeprefix("SIG")
        number = _by_name(name) if name else None
    if number is None or number not in _VALID:
        raise BadArgument(
            f"unknown signal {text!r}; use a name such as HUP, TERM, USR1 "
            f"or a number from 1 to {max(_VALID)}"
        )
    return number


def signal_name(number: int) -> str:
    """The conventional name of a signal number: SIGTERM, SIGRTMIN+3, or SIG<n> as a last resort."""
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = None
    if name and name not in ("SIGRTMIN", "SIGRTMAX"):
        return name
    if _RTMIN and _RTMIN <= number <= _RTMAX:
        if number in (_RTMIN, _RTMAX):
            return "SIGRTMIN" if number == _RTMIN else "SIGRTMAX"
        return f"SIGRTMIN+{number - _RTMIN}"
    return name or f"SIG{number}"
