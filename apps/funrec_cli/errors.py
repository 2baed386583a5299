"""The one error type the command reports in one line."""


class CliError(Exception):
    """A failure with its cause in one line: ``funrec`` prints it and exits with code 1."""
