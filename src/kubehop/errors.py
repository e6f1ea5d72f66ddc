"""kubehop's own exception hierarchy.

Every failure a user can cause or meet derives from :class:`KubehopError`, so the command line
prints one line (the message, which says what is wrong and what to do) and exits non-zero
instead of showing a traceback. The original exception, if any, travels as ``__cause__``.
"""


class KubehopError(Exception):
    """A failure kubehop can explain in one line."""

    exit_code = 1


class UsageError(KubehopError):
    """Bad input from the user: wrong flag value, unknown name, missing file."""

    exit_code = 2


class PreconditionError(KubehopError):
    """The machine lacks something kubehop needs (root, a kernel feature, a free port)."""

    exit_code = 3


class BuildError(KubehopError):
    """An upstream component failed to build; the message names its log."""

    exit_code = 4


class TestbedError(KubehopError):
    """A testbed component failed to start or answer; the message names its log."""

    exit_code = 5
