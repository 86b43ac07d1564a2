"""One exception hierarchy; each kind carries the exit code the CLI returns for it (SPEC §1)."""

from __future__ import annotations


class MlpackError(Exception):
    """Base of every error mlpack reports to a user instead of a traceback."""

    exit_code = 2

    def __init__(self, message: str, *, details: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.details = details  # a multi-line report printed after the message


class ConfigError(MlpackError):
    """Bad usage or bad configuration: a key, a file, a value the user must change."""

    exit_code = 2


class DataError(MlpackError):
    """The training data failed validation."""

    exit_code = 1


class QualityGateError(MlpackError):
    """A metric fell below its gate, or ONNX and scikit-learn disagreed beyond the tolerance."""

    exit_code = 1

    def __init__(self, message: str, *, details: str = "") -> None:
        super().__init__(message, details=details)
        self.metadata: dict[str, object] = {}  # metrics and parity of the rejected model, for the registry


class ExternalError(MlpackError):
    """Something outside mlpack failed: the database, the package tools, the Docker engine."""

    exit_code = 3
