"""The gRPC transport: the same answers as HTTP, errors mapped, and the shipped descriptor
in step with the proto."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import MINILM_NAME, REPO, distinct_texts
from helpers import as_array, assert_same_rows, cosines

import embedrt
from embedrt import APIError, AsyncClient, Client


def grpc_client(server, **options) -> Client:
    return Client(transport="grpc", grpc_target=server.grpc_target, **options)


def test_grpc_gives_the_same_vectors_and_models_as_http(server, golden):
    texts = distinct_texts(150)
    with grpc_client(server) as over_grpc, Client(server.url) as over_http:
        assert_same_rows(
            as_array(over_grpc.embed(texts, model=MINILM_NAME)),
            as_array(over_http.embed(texts, model=MINILM_NAME)),
        )
        assert over_grpc.models() == over_http.models()
        jina = dict(model="jina", task="retrieval.query", dimensions=16, normalized=False)
        np.testing.assert_allclose(
            over_grpc.embed_numpy(texts[:5], **jina),
            over_http.embed_numpy(texts[:5], **jina),
            atol=2e-5,
        )
        golden_got = as_array(over_grpc.embed(golden["texts"], model=MINILM_NAME))
    assert cosines(golden_got, np.array(golden["embeddings"])).min() >= 0.9999


def test_grpc_errors_are_api_errors(server, keyed_server):
    with grpc_client(server) as client:
        with pytest.raises(APIError) as unknown:
            client.embed("x", model="no-such-model")
        with pytest.raises(APIError) as size:
            client.embed("x", model="jina", dimensions=12)
    assert (unknown.value.status, unknown.value.code) == (404, "NOT_FOUND")
    assert (size.value.status, size.value.code) == (400, "INVALID_ARGUMENT")
    with grpc_client(keyed_server, api_key="wrong") as client:
        with pytest.raises(APIError) as refused:
            client.embed("x")
    assert refused.value.status == 401
    with grpc_client(keyed_server, api_key="secret") as client:
        assert len(client.embed("x")) == 384


def test_async_grpc_coalesces_too(server):
    texts = distinct_texts(100)

    async def run():
        client = AsyncClient(transport="grpc", grpc_target=server.grpc_target)
        try:
            return await asyncio.gather(*(client.embed(t, model=MINILM_NAME) for t in texts))
        finally:
            await client.close()

    before = server.metric("embedrt_requests_total", model=MINILM_NAME, status="ok")
    got = asyncio.run(run())
    assert server.metric("embedrt_requests_total", model=MINILM_NAME, status="ok") - before <= 4
    with Client(server.url) as client:
        assert_same_rows(as_array(got), as_array(client.embed(texts, model=MINILM_NAME)))


def test_the_shipped_descriptor_matches_the_proto(tmp_path):
    built = tmp_path / "embedrt_v1.binpb"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{REPO / 'api/proto'}",
            f"--descriptor_set_out={built}",
            "embedrt/v1/embedrt.proto",
        ],
        check=True,
    )
    shipped = Path(embedrt.__file__).parent / "_proto/embedrt_v1.binpb"
    assert shipped.read_bytes() == built.read_bytes(), (
        "api/proto changed: rebuild clients/python/src/embedrt/_proto/embedrt_v1.binpb "
        "(the command is in clients/python/README.md)"
    )
