"""Exceptions and warnings raised by tpopk.

Every error a user can cause derives from :class:`TpopkError`, so the command line can
print it without a traceback.
"""


class TpopkError(Exception):
    """Base class for errors caused by user input (data, model cards, files)."""


class TpopkWarning(UserWarning):
    """Base class for warnings issued by tpopk (treated as errors in the test suite)."""
