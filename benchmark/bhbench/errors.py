"""Errors a user can cause and fix; the CLI prints them as one line, never a traceback."""


class UserError(Exception):
    """A problem with what the user asked for or pointed at (bad file, unknown name, bad value)."""


class DataError(UserError):
    """A dataset tree, image or fold file that cannot be used as it is."""
