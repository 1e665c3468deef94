"""Errors a user can act on.

Each carries a one-line message that says what is wrong and how to fix it, and the
exit code the CLI returns. Anything else that escapes is a bug.
"""


class FaceprivError(Exception):
    """An error the user can fix; printed as one line, no traceback."""

    exit_code = 1


class ConfigError(FaceprivError):
    """The run config, a node setting or a command-line option is wrong."""

    exit_code = 2


class MediaError(FaceprivError):
    """An input or output file or device cannot be used as asked."""

    exit_code = 2


class RunFailure(FaceprivError):
    """The run finished but some inputs could not be processed."""

    exit_code = 1
