"""The C library, for the calls Python does not wrap: prctl (the server as a subreaper),
unshare (a thread's own umask), fallocate (holes punched in log files). Its functions are
looked up among the process's own symbols: finding libc by name (ctypes.util.find_library)
would run ldconfig in a subprocess."""

from __future__ import annotations

import ctypes

LIBC = ctypes.CDLL(None, use_errno=True)
