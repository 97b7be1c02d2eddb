"""The package's one exception base: every error a user can cause derives from it.

A command-line tool catches :class:`EmobedError` and prints one ``error:`` line
(exit code 2); anything else is a library bug and keeps its traceback. The
subclasses stay ``ValueError``, ``RuntimeError`` or ``OSError`` subclasses as
well, so code that catches those keeps working.

>>> from emobed_tf.configs import ConfigError
>>> issubclass(ConfigError, EmobedError) and issubclass(ConfigError, ValueError)
True
"""


class EmobedError(Exception):
    """A problem the user can mend (a setting, a file, a folder); the message names it."""
