"""The one error type of the harness: a ToolError of the contract (exit 6, unavailable)."""

from emotion_contract.errors import Unavailable


class StackError(Unavailable):
    """A local server could not be started, or stopped answering.

    The message names the server and ends with the last lines of its log.
    """
