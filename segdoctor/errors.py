"""One error hierarchy. Every message names the path, what was found and what was expected."""

from __future__ import annotations


class SegDoctorError(Exception):
    """Base class: a problem with the user's input that ends the run with exit status 2."""


class UsageError(SegDoctorError):
    """Command-line options that contradict each other or name unknown checks."""


class DatasetError(SegDoctorError):
    """No dataset could be found or paired at the given path."""


class ModelLoadError(SegDoctorError):
    """The model file is missing, corrupt or cannot be loaded safely."""


class HistoryError(SegDoctorError):
    """The training log cannot be read in any accepted format."""


class PipelineError(SegDoctorError):
    """The user's data pipeline cannot be loaded or does not yield (image, mask) batches."""
