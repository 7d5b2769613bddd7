"""What can go wrong in an export, each with the fix in its hint (see ``biovita.errors``)."""

from __future__ import annotations

from biovita.errors import BiovitaError, EngineUnavailableError, ParityError

# Raised by the parity checks and the engine build, which live in biovita/ and device/ so that a
# recorder without the exporter can run them; re-exported for the exporter's callers.
__all__ = [
    "EngineUnavailableError",
    "ExportError",
    "OpSupportError",
    "ParityError",
    "QuantisationError",
]


class ExportError(BiovitaError):
    """An export that cannot produce a trustworthy bundle (bad input, failed ONNX check, ...)."""


class OpSupportError(ExportError):
    """The ONNX graph holds an op the target's TensorRT cannot parse."""


class QuantisationError(ExportError):
    """INT8 quantisation changed the model's answers more than the threshold allows."""
