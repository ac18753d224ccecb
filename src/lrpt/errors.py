"""Exceptions lrpt raises for bad input; the CLI turns them into one line and exit code 2."""


class LrptError(ValueError):
    """Bad input to lrpt: the message names the offending value and what was expected."""
