"""How texts are cut into requests (no server needed)."""

from __future__ import annotations

from embedrt._request import MAX_REQUEST_BYTES, split


def test_ranges_cover_every_text_once_in_order():
    texts = [f"text {i}" for i in range(130)]
    ranges = split(texts, max_inputs=64, max_tokens=100_000)
    assert ranges == [(0, 64), (64, 128), (128, 130)]


def test_token_budget_and_the_models_limit():
    texts = ["x" * 4000] * 6  # ~1,002 estimated tokens each
    assert split(texts, 64, max_tokens=2100) == [(0, 2), (2, 4), (4, 6)]
    # Counted at the model's limit (the server truncates): 8 fit in 2,100.
    assert split(texts, 64, max_tokens=2100, longest=256) == [(0, 6)]


def test_a_request_stays_under_the_servers_body_limit():
    texts = ["y" * (MAX_REQUEST_BYTES // 3)] * 7
    ranges = split(texts, 64, max_tokens=10**9, longest=256)
    assert ranges == [(0, 3), (3, 6), (6, 7)]


def test_one_text_over_every_budget_still_goes_alone():
    assert split(["z" * 100_000, "a"], 64, max_tokens=10) == [(0, 1), (1, 2)]
    assert split([], 64, 100) == []
