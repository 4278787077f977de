"""Retries against a server whose queue is tiny: every call succeeds in the end, each input is
computed exactly once, and each caller gets its own vectors."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from helpers import as_array, server_vectors

from embedrt import AsyncClient, Client

BATCHES = "embedrt_batch_size_sum"


def reference(busy_server, calls):
    """Each call's vectors, asked one call at a time (the queue is never full then)."""
    return [server_vectors(busy_server, {"model": "slow", "input": texts}) for texts in calls]


def test_blocking_callers_all_succeed_through_a_full_queue(busy_server):
    calls = [[f"thread {i} text {k}" for k in range(1 + i % 4)] for i in range(24)]
    want = reference(busy_server, calls)
    refused = busy_server.metric("embedrt_requests_total", model="slow", status="overloaded")
    computed = busy_server.metric(BATCHES, model="slow")
    with Client(busy_server.url, max_concurrency=24) as client:
        with ThreadPoolExecutor(24) as threads:
            got = list(threads.map(lambda texts: client.embed(texts, model="slow"), calls))
    for texts, vectors, expected in zip(calls, got, want):
        np.testing.assert_array_equal(as_array(vectors), expected, err_msg=str(texts))
    assert busy_server.metric("embedrt_requests_total", model="slow", status="overloaded") > refused
    assert busy_server.metric(BATCHES, model="slow") - computed == sum(map(len, calls))


def test_async_callers_all_succeed_through_a_full_queue(busy_server):
    calls = [[f"task {i} text {k}" for k in range(1 + i % 3)] for i in range(40)]
    want = reference(busy_server, calls)
    refused = busy_server.metric("embedrt_requests_total", model="slow", status="overloaded")
    computed = busy_server.metric(BATCHES, model="slow")

    async def run():
        async with AsyncClient(busy_server.url, max_concurrency=40, coalesce_ms=0) as client:
            return await asyncio.gather(*(client.embed(texts, model="slow") for texts in calls))

    got = asyncio.run(run())
    for texts, vectors, expected in zip(calls, got, want):
        np.testing.assert_array_equal(as_array(vectors), expected, err_msg=str(texts))
    assert busy_server.metric("embedrt_requests_total", model="slow", status="overloaded") > refused
    assert busy_server.metric(BATCHES, model="slow") - computed == sum(map(len, calls))
