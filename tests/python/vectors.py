"""What the client scripts of tests/python compare vectors with (imported from beside them)."""

import math


def cosine(a, b):
    """The cosine similarity of two vectors."""
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def assert_close(got, want, label):
    """Asserts the fixtures' f32 tolerance: cosine >= 0.9999 and max |difference| <= 1e-4."""
    assert len(got) == len(want), (label, len(got), len(want))
    similarity = cosine(got, want)
    worst = max(abs(g - w) for g, w in zip(got, want))
    assert similarity >= 0.9999 and worst <= 1e-4, (label, similarity, worst)
