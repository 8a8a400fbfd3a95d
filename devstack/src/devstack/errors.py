"""The one error type of the harness."""


class StackError(RuntimeError):
    """A local server could not be started, or stopped answering.

    The message names the server and ends with the last lines of its log.
    """
