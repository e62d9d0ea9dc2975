"""The one exception type the command line turns into a one-line message and exit code 2."""


class WganError(Exception):
    """A problem with the user's input (config, option, file, results folder).

    Raised anywhere; caught only in cli.py, which prints ``error: <message>`` and exits 2, so a
    user never sees a traceback for a mistake they can fix.
    """


class Interrupted(Exception):
    """The user stopped a sweep (Ctrl-C). Everything written is whole, and the newest
    checkpoints let `wgan sweep --resume` finish it; cli.py prints how and exits 130."""

    def __init__(self, folder: object) -> None:
        super().__init__(f"interrupted: finish the sweep with `wgan sweep --resume {folder}`")
        self.folder = folder
