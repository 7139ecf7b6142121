"""The one exception type the CLI turns into a clean `error: ...` line (exit code 2)."""


class UserError(Exception):
    """Bad input or a missing prerequisite; the message names the file, line or key and the fix."""
