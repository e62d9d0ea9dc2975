"""The one exception type the command line turns into a one-line message and exit code 2."""


class WganError(Exception):
    """A problem with the user's input (config, option, file, results folder).

    Raised anywhere; caught only in cli.py, which prints ``error: <message>`` and exits 2, so a
    user never sees a traceback for a mistake they can fix.
    """
