"""Exception hierarchy shared by every grm package.

The CLIs catch :class:`GrmError`, print its message on one line and exit with status 2.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno


class GrmError(Exception):
    """Base class of every error a user can cause and fix."""


class ConfigError(GrmError):
    """Unknown config name or an invalid config value."""


class CheckpointError(GrmError):
    """A checkpoint that is missing, unsafe, corrupt or for another config."""


class ArtifactMismatchError(GrmError):
    """An exported model or engine that does not fit the request (config, version, GPU)."""


class BackendUnavailableError(GrmError):
    """A requested backend whose package or hardware is missing."""


class InputError(GrmError):
    """Bad user input: missing file, unreadable frame, invalid box, NaN network output."""


class ParityError(GrmError):
    """An exported model whose outputs differ from PyTorch beyond the tolerance table."""


class DatasetError(GrmError):
    """A dataset tree that is missing or does not have the expected layout."""


class OutputError(GrmError):
    """An output that cannot be written: read-only or full file system, no permission, a folder in the way."""


class Interrupted(GrmError):
    """Ctrl-C, re-raised by a command with a note on what was kept and how to continue (exit status 130)."""


def os_error_cause(error: OSError) -> str:
    """The cause of a failed file operation in words (``no space left on the device``, ``Read-only file system``)."""
    if error.errno == errno.ENOSPC:
        return "no space left on the device"
    return error.strerror or " ".join(str(error).split()) or type(error).__name__
