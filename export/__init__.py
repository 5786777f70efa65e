"""ONNX export of teachers and students, and the runtime a controller uses (numpy + onnxruntime).

Importing this package does not import JAX: the converter lives in ``deepdistill.export.writer``
(``export_run``) and the ``export-onnx`` CLI; the runtime in :mod:`deepdistill.export.runtime`.
"""

from deepdistill.export.metadata import SCHEMA_VERSION, MetadataError
from deepdistill.export.runtime import OnnxModel, OnnxPolicy, PolicyError, PolicyFileError, PolicyInputError

__all__ = [
    "SCHEMA_VERSION",
    "MetadataError",
    "OnnxModel",
    "OnnxPolicy",
    "PolicyError",
    "PolicyFileError",
    "PolicyInputError",
]
