"""`Client` against a real server: the server's own vectors, splitting, errors, retries."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from conftest import MINILM, MINILM_NAME, Server, distinct_texts, free_port, model_table
from helpers import as_array, assert_same_rows, cosines, server_vectors

from embedrt import APIConnectionError, APIError, Client, Model


def test_vectors_are_the_servers_own_and_sentence_transformers(server, golden):
    texts = golden["texts"]
    with Client(server.url) as client:
        got = as_array(client.embed(texts, model=MINILM_NAME))
    want = server_vectors(server, {"model": MINILM_NAME, "input": texts})
    np.testing.assert_array_equal(got, want)
    assert cosines(got, np.array(golden["embeddings"])).min() >= 0.9999


def test_a_bare_string_gives_one_vector_and_a_list_of_one_a_list(server):
    with Client(server.url) as client:
        one = client.embed("hello there", model=MINILM_NAME)
        listed = client.embed(["hello there"], model=MINILM_NAME)
        assert client.embed([], model=MINILM_NAME) == []
    assert isinstance(one[0], float) and len(one) == 384
    assert listed == [one]


def test_the_model_may_be_left_out_when_one_is_served(keyed_server):
    with Client(keyed_server.url, api_key="secret") as client:
        assert len(client.embed("x")) == 384


def test_embed_numpy_is_a_float32_matrix_equal_to_embed(server):
    texts = distinct_texts(70)
    with Client(server.url) as client:
        matrix = client.embed_numpy(texts, model=MINILM_NAME)
        lists = client.embed(texts, model=MINILM_NAME)
        empty = client.embed_numpy([], model=MINILM_NAME)
    assert matrix.dtype == np.float32 and matrix.shape == (70, 384)
    assert_same_rows(matrix, as_array(lists))
    assert empty.shape == (0, 0)


def test_models_reports_limits_and_tasks(server):
    with Client(server.url) as client:
        models = {model.id: model for model in client.models()}
    assert set(models) == {MINILM_NAME, "small-requests", "jina"}
    assert isinstance(models["jina"], Model)
    assert models["small-requests"].max_inputs == 7
    assert models[MINILM_NAME].dimensions == 384 and models[MINILM_NAME].tasks == ()
    assert "retrieval.query" in models["jina"].tasks
    assert models["jina"].variants[0].backend == "candle"


def test_requests_are_split_by_the_servers_limit_and_answered_in_order(server):
    texts = distinct_texts(100)
    before = server.metric("embedrt_requests_total", model="small-requests", status="ok")
    with Client(server.url, max_concurrency=4) as client:
        got = as_array(client.embed(texts, model="small-requests"))
    sent = server.metric("embedrt_requests_total", model="small-requests", status="ok") - before
    assert sent == 15  # ceil(100 / 7): none refused with too_many_inputs
    want = np.concatenate(
        [
            server_vectors(server, {"model": "small-requests", "input": texts[i : i + 7]})
            for i in range(0, 100, 7)
        ]
    )
    assert_same_rows(got, want)


def test_long_texts_go_in_smaller_requests(server):
    # ~450 estimated tokens each, counted as MiniLM's limit (256, the server truncates): two
    # fit in 600.
    long_texts = [("word%d " % i) * 300 for i in range(8)]
    before = server.metric("embedrt_requests_total", model=MINILM_NAME, status="ok")
    with Client(server.url, batch_tokens=600) as client:
        got = as_array(client.embed(long_texts, model=MINILM_NAME))
    assert server.metric("embedrt_requests_total", model=MINILM_NAME, status="ok") - before == 4
    want = server_vectors(server, {"model": MINILM_NAME, "input": long_texts})
    assert_same_rows(got, want)


def test_five_thousand_texts_in_one_call(server):
    texts = distinct_texts(5000)
    with Client(server.url) as client:
        got = client.embed_numpy(texts, model=MINILM_NAME)
    assert got.shape == (5000, 384)
    sample = list(range(0, 5000, 97))
    want = server_vectors(server, {"model": MINILM_NAME, "input": [texts[i] for i in sample]})
    assert_same_rows(got[sample], want)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_jina_tasks_sizes_and_normalization_match_the_official_outputs(server, jina_expected):
    texts = jina_expected["texts"]
    with Client(server.url) as client:
        for case in jina_expected["cases"]:
            got = client.embed(
                texts,
                model="jina",
                task=case["task"] or "none",
                dimensions=case["dimensions"],
                normalized=case.get("normalized", True),
            )
            diff = np.abs(as_array(got) - np.array(case["embeddings"], dtype=np.float32)).max()
            assert diff <= 1e-4, (case["task"], case["dimensions"], diff)


def test_late_chunking_sends_the_chunks_as_one_document(server):
    chunks = ["Late chunking pools token embeddings.", "Each chunk sees the whole text."]
    body = {"model": "jina", "input": chunks, "late_chunking": True, "task": "retrieval.passage"}
    with Client(server.url, batch_size=1) as client:
        got = client.embed(chunks, model="jina", task="retrieval.passage", late_chunking=True)
    np.testing.assert_array_equal(as_array(got), server_vectors(server, body))


def test_refusals_raise_api_error_with_the_servers_reason(server):
    with Client(server.url) as client:
        with pytest.raises(APIError) as unknown:
            client.embed("x", model="no-such-model")
        with pytest.raises(APIError) as size:
            client.embed("x", model="jina", dimensions=12)
        with pytest.raises(APIError) as task:
            client.embed("x", model=MINILM_NAME, task="retrieval.query")
        with pytest.raises(TypeError):
            client.embed([b"bytes"], model=MINILM_NAME)  # type: ignore[list-item]
    assert (unknown.value.status, unknown.value.code, unknown.value.param) == (
        404,
        "model_not_found",
        "model",
    )
    assert "no-such-model" in unknown.value.message
    assert (size.value.status, size.value.param) == (400, "dimensions")
    assert "32" in size.value.message  # the sizes it may take are listed
    assert (task.value.status, task.value.param) == (400, "task")


def test_a_wrong_api_key_is_refused_and_the_right_one_accepted(keyed_server):
    with Client(keyed_server.url, api_key="wrong") as client:
        with pytest.raises(APIError) as refused:
            client.embed("x")
    assert (refused.value.status, refused.value.code) == (401, "invalid_api_key")
    with Client(keyed_server.url, api_key="secret") as client:
        assert len(client.embed(["x", "y"])) == 2


def test_an_unreachable_server_raises_a_connection_error_after_the_retries():
    started = time.monotonic()
    with Client(f"http://127.0.0.1:{free_port()}", max_retries=2) as client:
        with pytest.raises(APIConnectionError) as lost:
            client.embed("x")
    assert lost.value.status is None and lost.value.retryable
    assert time.monotonic() - started >= 0.1  # it waited before the two retries


def test_connection_errors_are_retried_until_the_server_is_up():
    port = free_port()
    started: list = []
    starter = threading.Timer(
        0.5, lambda: started.append(Server("", model_table("echo", MINILM, "echo"), port))
    )
    starter.start()
    try:
        with Client(f"http://127.0.0.1:{port}") as client:
            assert len(client.embed(["came", "through"])) == 2
    finally:
        starter.join()
        for server in started:
            server.stop()


def test_arguments_are_checked():
    with pytest.raises(ValueError):
        Client(transport="carrier-pigeon")
    with pytest.raises(ValueError):
        Client(transport="grpc")
    with pytest.raises(ValueError):
        Client(max_concurrency=0)
