"""One error base class for the whole project.

Every error names the problem (the message) and the fix (the hint). Only the CLIs turn them into
text for a person; library code raises and lets the caller decide.
"""

from __future__ import annotations


class BiovitaError(Exception):
    """Base class: ``str(err)`` is the problem, ``err.hint`` says what to do about it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def describe(self) -> str:
        """Problem and fix in one text, as the CLIs print it."""
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class AudioError(BiovitaError):
    """Audio that cannot be decoded or used: corrupt, empty, non-finite, wrong shape."""


class BundleError(BiovitaError):
    """A bundle that is incomplete, tampered with, or of an unknown schema."""


class SchemaVersionError(BiovitaError):
    """A record, envelope or manifest of a schema version this code does not know."""


class WireFormatError(BiovitaError):
    """An MQTT payload that does not follow the contract (malformed, oversized, wrong types).

    ``reason`` is a short stable code (``oversized``, ``not_utf8``, ``not_json``,
    ``unknown_schema``, ``invalid``, ``topic_mismatch``) that dead-letter tables count by.
    """

    def __init__(self, message: str, hint: str = "", reason: str = "invalid") -> None:
        super().__init__(message, hint)
        self.reason = reason


class ConfigError(BiovitaError):
    """A configuration file, environment variable or flag with an invalid value."""


class ManifestError(BiovitaError):
    """A training-data manifest with a missing column, file or unknown species."""


class ParityError(BiovitaError):
    """An exported model or engine does not reproduce its reference within the stated tolerance."""


class EngineUnavailableError(BiovitaError):
    """An inference runtime (TensorRT, cuda-python, ONNX Runtime) or the GPU it needs is missing."""
