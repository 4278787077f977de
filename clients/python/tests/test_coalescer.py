"""The coalescer's rules on a fake transport: each caller gets its own vectors, one bad
caller fails alone, a cancelled caller does not disturb the others."""

from __future__ import annotations

import asyncio
from array import array
from typing import List

import pytest

from embedrt import APIError
from embedrt._coalesce import Coalescer
from embedrt._request import EmbedOptions

OPTIONS = EmbedOptions(model="m")


class FakeServer:
    """Answers each text with the vector [len(text)]; refuses requests holding "bad"."""

    def __init__(self, delay: float = 0.0) -> None:
        self.requests: List[List[str]] = []
        self.delay = delay

    async def send(self, texts: List[str], options: EmbedOptions) -> List[array]:
        self.requests.append(list(texts))
        await asyncio.sleep(self.delay)
        if "bad" in texts:
            raise APIError("bad input", status=400, code="invalid_value", param="input")
        return [array("f", [float(len(text))]) for text in texts]


async def test_callers_get_their_own_slices_of_shared_requests():
    fake = FakeServer()
    coalescer = Coalescer(fake.send, window=0.01, max_tokens=10_000)
    calls = [["a"], ["bb", "ccc"], ["dddd"], ["eeeee", "ffffff"], ["g"]]
    got = await asyncio.gather(*(coalescer.embed(texts, OPTIONS, 5) for texts in calls))
    assert [[v[0] for v in vectors] for vectors in got] == [
        [1.0],
        [2.0, 3.0],
        [4.0],
        [5.0, 6.0],
        [1.0],
    ]
    # The fourth call would pass 5 texts: the first request leaves with 4, the rest share one.
    assert fake.requests == [["a", "bb", "ccc", "dddd"], ["eeeee", "ffffff", "g"]]


async def test_different_options_never_share_a_request():
    fake = FakeServer()
    coalescer = Coalescer(fake.send, window=0.01, max_tokens=10_000)
    await asyncio.gather(
        coalescer.embed(["a"], OPTIONS, 64), coalescer.embed(["b"], EmbedOptions(model="other"), 64)
    )
    assert sorted(fake.requests) == [["a"], ["b"]]


async def test_one_bad_caller_fails_alone():
    fake = FakeServer()
    coalescer = Coalescer(fake.send, window=0.01, max_tokens=10_000)
    results = await asyncio.gather(
        coalescer.embed(["fine"], OPTIONS, 64),
        coalescer.embed(["bad"], OPTIONS, 64),
        coalescer.embed(["also fine"], OPTIONS, 64),
        return_exceptions=True,
    )
    assert results[0][0][0] == 4.0 and results[2][0][0] == 9.0
    assert isinstance(results[1], APIError) and results[1].param == "input"


async def test_a_cancelled_caller_leaves_the_others_served():
    fake = FakeServer(delay=0.05)
    coalescer = Coalescer(fake.send, window=0.01, max_tokens=10_000)
    leaving = asyncio.ensure_future(coalescer.embed(["gone"], OPTIONS, 64))
    staying = asyncio.ensure_future(coalescer.embed(["here"], OPTIONS, 64))
    await asyncio.sleep(0.02)  # the shared request is in flight
    leaving.cancel()
    assert (await staying)[0][0] == 4.0
    with pytest.raises(asyncio.CancelledError):
        await leaving
