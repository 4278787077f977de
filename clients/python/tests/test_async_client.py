"""`AsyncClient` against a real server: the same vectors, coalescing, mixed tasks."""

from __future__ import annotations

import asyncio

import numpy as np
from conftest import MINILM_NAME, distinct_texts
from helpers import as_array, assert_same_rows, server_vectors

from embedrt import AsyncClient, Client


async def test_vectors_equal_the_blocking_clients(server):
    texts = distinct_texts(150)
    async with AsyncClient(server.url) as client:
        got = as_array(await client.embed(texts, model=MINILM_NAME))
        one = await client.embed("hello there", model=MINILM_NAME)
        matrix = await client.embed_numpy(texts[:3], model=MINILM_NAME)
    with Client(server.url) as blocking:
        want = as_array(blocking.embed(texts, model=MINILM_NAME))
        assert one == blocking.embed("hello there", model=MINILM_NAME)
    assert_same_rows(got, want)
    assert matrix.shape == (3, 384)


async def test_two_hundred_one_text_callers_share_a_few_requests(server):
    texts = distinct_texts(200)
    before = server.metric("embedrt_requests_total", model=MINILM_NAME, status="ok")
    async with AsyncClient(server.url, coalesce_ms=5) as client:
        got = await asyncio.gather(*(client.embed(text, model=MINILM_NAME) for text in texts))
    requests = server.metric("embedrt_requests_total", model=MINILM_NAME, status="ok") - before
    assert requests <= 8, requests  # 200 texts in requests of up to 64
    want = np.concatenate(
        [
            server_vectors(server, {"model": MINILM_NAME, "input": texts[i : i + 50]})
            for i in range(0, 200, 50)
        ]
    )
    assert_same_rows(as_array(got), want)


async def test_without_coalescing_every_call_is_its_own_request(server):
    texts = distinct_texts(40)
    before = server.metric("embedrt_requests_total", model=MINILM_NAME, status="ok")
    async with AsyncClient(server.url, coalesce_ms=0) as client:
        got = await asyncio.gather(*(client.embed(text, model=MINILM_NAME) for text in texts))
    assert server.metric("embedrt_requests_total", model=MINILM_NAME, status="ok") - before == 40
    assert_same_rows(as_array(got), server_vectors(server, {"model": MINILM_NAME, "input": texts}))


async def test_coalesced_requests_respect_the_models_input_limit(server):
    texts = distinct_texts(30)
    async with AsyncClient(server.url, coalesce_ms=20) as client:
        got = await asyncio.gather(*(client.embed([t], model="small-requests") for t in texts))
    want = server_vectors(server, {"model": "small-requests", "input": texts[:7]})
    assert_same_rows(as_array([v[0] for v in got[:7]]), want)
    assert len(got) == 30 and all(len(v) == 1 for v in got)


async def test_callers_with_different_tasks_get_their_own_adapters(server, jina_expected):
    # The mixed-task fixture: each row's task differs; concurrent callers, one row each.
    mixed = jina_expected["mixed_batch"]
    async with AsyncClient(server.url) as client:
        got = await asyncio.gather(
            *(
                client.embed(row["text"], model="jina", task=row["task"], dimensions=32)
                for row in mixed["rows"]
            )
        )
    diff = np.abs(as_array(got) - np.array(mixed["embeddings"], dtype=np.float32)).max()
    assert diff <= 1e-4, diff


def test_one_client_serves_one_event_loop_after_another(server):
    client = AsyncClient(server.url)
    first = asyncio.run(client.embed("one loop", model=MINILM_NAME))
    second = asyncio.run(client.embed("one loop", model=MINILM_NAME))
    asyncio.run(client.close())
    assert first == second and len(first) == 384
