"""Typed errors that carry a sentence for people.

Pages show ``str(error)`` with ``st.error``; the CLIs print it and exit non-zero. Every message
says what went wrong and what to do about it.
"""


class TransferLabError(Exception):
    """Base class: anything Transfer Lab raises on purpose."""


class ConfigError(TransferLabError, ValueError):
    """A setting is impossible (out of range, wrong type, contradicts another setting)."""


class DataUnavailable(TransferLabError):
    """A dataset cannot be loaded here: not downloaded, no network, wrong folder."""


class ImageUnreadable(TransferLabError):
    """A file is not an image we can decode safely (empty, corrupt, too large, not an image)."""


class WeightsUnavailable(TransferLabError):
    """Pretrained weights are not on this machine and cannot be fetched."""


class RunError(TransferLabError):
    """A training run cannot be started, found, resumed or stopped as asked."""


class DataHomeUnavailable(TransferLabError):
    """The data directory cannot be created or written: a file stands in its way, it is read-only, or its
    disk is full. Reading what it already holds keeps working where it can."""


class DatasetError(TransferLabError):
    """A dataset made in the app cannot be changed as asked: a bad name, a missing class or image, a refused zip."""


class ExportError(TransferLabError):
    """A run's model cannot be exported as asked: no saved model, an unknown format, a converter that failed."""
