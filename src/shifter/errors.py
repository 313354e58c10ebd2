"""The one error hierarchy of shifter.

Every error a user can see is a `ShifterError`: one sentence in `message`, an optional
`hint` saying what to do about it, and an `exit_code` for the command-line tools. The CLIs
print `str(error)` (plus the hint) and, with `--debug`, the chained traceback.
"""

from __future__ import annotations


class ShifterError(Exception):
    """Base of every error shifter reports to a user."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def describe(self) -> str:
        """The message and, on its own line, the hint: what a CLI prints."""
        if self.hint:
            return f"{self}\nhint: {self.hint}"
        return str(self)


class LocatedError(ShifterError):
    """An error tied to a place in an input: a file and line, or a named key."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.source = source
        self.line = line
        self.key = key

    def __str__(self) -> str:
        where = ""
        if self.source is not None:
            where = self.source if self.line is None else f"{self.source}:{self.line}"
        if self.key is not None:
            where = f"{where} key {self.key!r}" if where else f"key {self.key!r}"
        return f"{where}: {self.message}" if where else self.message


class ParseError(LocatedError):
    """Text that does not follow its grammar (a config line, an image name, a volume spec)."""


class ConfigError(LocatedError):
    """A configuration that parses but is not acceptable (missing key, bad value, unsafe file)."""


class ImageReferenceError(ParseError):
    """An image name a user typed that is not a valid reference."""


class ToolError(ShifterError):
    """An external tool failed: names the command, its exit status and its last stderr lines."""

    def __init__(
        self,
        message: str,
        *,
        argv: list[str] | None = None,
        returncode: int | None = None,
        stderr_tail: str = "",
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.argv = argv or []
        self.returncode = returncode
        self.stderr_tail = stderr_tail

    def __str__(self) -> str:
        if self.stderr_tail:
            return f"{self.message}\n{self.stderr_tail}"
        return self.message


class ToolNotFoundError(ToolError):
    """An external tool is not installed or not at the configured path."""


class PermissionDeniedError(ShifterError):
    """The caller may not do this (wrong user, private image, root refused)."""

    exit_code = 1
