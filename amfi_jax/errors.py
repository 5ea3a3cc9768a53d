"""The error types of bad input: what the user can fix (a file, a config field, a flag, a workdir).

Entry points (`amfi_jax.cli.run`) print a `UserError` as its message and exit with status 2,
without a traceback; every other exception is a bug and keeps its traceback. Each type also
derives from the built-in type callers caught before (ValueError, FileNotFoundError).
"""

from __future__ import annotations


class UserError(Exception):
  """Input the user can fix; the message says what is wrong, where, and what to do."""


class ConfigError(UserError, ValueError):
  """A config value (or a combination of values) the code cannot use; names the field."""


class MissingFileError(UserError, FileNotFoundError):
  """A file or directory the input names (a path in the config, a flag, a workdir's stage) that
  does not exist; says what would create it."""


class FlagError(UserError, ValueError):
  """A command-line flag with a value the command cannot use; names the flag."""
