"""One exception base for every error a client can cause; each carries its protocol code."""


class RPMError(Exception):
    """A failure reported to the client as `ERR <code> <message>`."""

    code = "internal"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class UnknownCommand(RPMError):
    code = "unknown-command"


class BadArgument(RPMError):
    code = "bad-argument"


class NoSuchProcess(RPMError):
    code = "no-such-process"


class Protected(RPMError):
    code = "protected"


class NotPermitted(RPMError):
    code = "not-permitted"


class NotFound(RPMError):
    code = "not-found"


class SpawnFailed(RPMError):
    code = "spawn-failed"


class NotManaged(RPMError):
    code = "not-managed"


class AuthRequired(RPMError):
    code = "auth-required"


class AuthFailed(RPMError):
    code = "auth-failed"


class LineTooLong(RPMError):
    code = "line-too-long"


class BadEncoding(RPMError):
    code = "bad-encoding"


class LimitReached(RPMError):
    code = "limit"


class StorageFailed(RPMError):
    code = "storage"
