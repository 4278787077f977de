"""The one digest the scripts stamp their outputs with (quantize_onnx.py, quantize_openvino.py)."""

import hashlib
from pathlib import Path


def sha256(*paths: Path) -> str:
    """One SHA-256 over the contents of `paths`, in order."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
