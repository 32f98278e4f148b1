"""Errors a user can act on. Entry points turn them into one clear line (CLI: exit code 2)."""


class UserError(ValueError):
    """Bad input from the user: the message says what was wrong and what to do."""


class ModelLoadError(UserError):
    """A model path or hub id that cannot be loaded as an ADDP/InstructPix2Pix checkpoint."""


class DataError(UserError):
    """A data set, annotation file, image or mask that cannot be read."""
