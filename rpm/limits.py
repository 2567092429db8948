"""The protocol's values and bounds: restart policies, what a program's name may be, and the
limits of WATCH, STOP, LOGS, HISTORY and FOLLOW (pure data)."""

from __future__ import annotations

import re

RESTART_POLICIES = ("no", "on-failure", "always")
# A program's name: never all digits, so it cannot be taken for a pid.
PROGRAM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
PROGRAM_NAME_RULE = "1 to 64 letters, digits, '_', '.' or '-', starting with a letter"
WATCH_MIN, WATCH_MAX = 0.1, 3600.0
GRACE_MAX = 3600.0
LOGS_MAX = 100_000
HISTORY_MAX = 1000  # records in one HISTORY reply; each text is cut too
FOLLOW_BACKLOG_MAX = 10_000
