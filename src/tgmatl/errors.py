"""Errors the stages report as one clear line (see :mod:`tgmatl.cli`)."""

from tgmatl.params import ParamsError


class InputError(ValueError):
    """Bad input data; the message names the file (and line, object or sample)."""


__all__ = ["InputError", "ParamsError"]
