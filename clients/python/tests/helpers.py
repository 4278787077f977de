"""Comparisons shared by the tests."""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
from conftest import Server


def server_vectors(server: Server, body: Dict) -> np.ndarray:
    """The server's own answer to ``body`` (a raw request, floats as JSON), as float32."""
    response = server.post(body)
    assert response.status_code == 200, response.text
    data = sorted(response.json()["data"], key=lambda item: item["index"])
    return np.array([item["embedding"] for item in data], dtype=np.float32)


def as_array(vectors: Sequence[Sequence[float]]) -> np.ndarray:
    return np.array(vectors, dtype=np.float32)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def assert_same_rows(got: np.ndarray, want: np.ndarray) -> None:
    """Each row of ``got`` is its own row of ``want`` (up to float noise from batching), and
    closer to it than to any other row: the order is right."""
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, want, atol=2e-5)
    similarity = got @ want.T
    assert (similarity.argmax(1) == np.arange(len(want))).all()
