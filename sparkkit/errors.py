"""The kit's error types. Each carries a message that is safe to print (no secret values)."""


class InputError(Exception):
    """Bad input: inventory, template, command line. Exit code 2; nothing on a host was touched."""

    def __init__(self, message: str, *, source: str = "", key: str = ""):
        if not key.isprintable():  # a key with a line break or control character is shown quoted
            key = repr(key)
        self.source = source
        self.key = key
        self.message = message
        where = ": ".join(part for part in (source, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class OperationError(Exception):
    """An operation on a host failed before it reached an outcome (a restore, a rollback, Ctrl-C
    and the rest are outcomes: ``sparkkit.deploy.outcome``). Exit code 1."""


class RemoteCommandError(OperationError):
    """A remote command exited non-zero."""

    def __init__(self, argv_text: str, rc: int, stderr: str):
        self.rc = rc
        self.stderr = stderr
        tail = stderr.strip().splitlines()[-5:]
        detail = "\n  ".join(tail) if tail else "(no output)"
        super().__init__(f"remote command failed (exit {rc}): {argv_text}\n  {detail}")


class HostUnreachable(OperationError):
    """No SSH connection could be opened to the host: nothing on it was touched."""


class ConnectionLost(OperationError):
    """The SSH connection dropped; the command in flight may or may not have run to its end."""
