"""`Client.rerank` and `AsyncClient.rerank` on both transports, and the LangChain and
LlamaIndex rerankers, against the tiny cross-encoders' reference outputs."""

from __future__ import annotations

import asyncio

import pytest
from conftest import MINILM_NAME, cross_encoder_expected
from langchain_core.documents import Document
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from embedrt import APIError, AsyncClient, Client, RerankResult
from embedrt.langchain import EmbedrtRerank as LangChainRerank
from embedrt.llama_index import EmbedrtRerank as LlamaIndexRerank

# Each served model beside its fixture.
MODELS = {"ms-marco": "ms-marco-reranker-tiny", "bge": "bge-reranker-tiny"}


def close(got: float, want: float) -> bool:
    return abs(got - want) <= 1e-4 * max(1.0, abs(want))


def check(results, expected, key="scores", top_n=None):
    ranking = [r["corpus_id"] for r in expected["ranking"]]
    assert [r.index for r in results] == ranking[:top_n]
    for result in results:
        assert isinstance(result, RerankResult)
        assert close(result.relevance_score, expected[key][result.index]), result


@pytest.mark.parametrize("model", sorted(MODELS))
def test_rerank_scores_and_ranks_as_the_reference(rerank_server, model):
    expected = cross_encoder_expected(MODELS[model])
    with Client(rerank_server.url) as client:
        results = client.rerank(expected["query"], expected["documents"], model=model)
        check(results, expected)
        raw = client.rerank(expected["query"], expected["documents"], model=model, raw_scores=True)
        check(raw, expected, key="raw_logits")
        top = client.rerank(
            expected["query"],
            expected["documents"],
            model=model,
            top_n=2,
            return_documents=True,
        )
        check(top, expected, top_n=2)
        assert [r.document for r in top] == [expected["documents"][r.index] for r in top]
        assert all(r.document is None for r in results)
        assert client.rerank(expected["query"], [], model=model) == []


def test_documents_beyond_the_models_limit_go_in_several_requests(rerank_server):
    """ms-marco takes 4 documents a request: 6 go in two, and rank as one request would."""
    expected = cross_encoder_expected("ms-marco-reranker-tiny")
    before = rerank_server.metric("embedrt_requests_total", model="ms-marco", status="ok")
    with Client(rerank_server.url) as client:
        results = client.rerank(expected["query"], expected["documents"], model="ms-marco")
    after = rerank_server.metric("embedrt_requests_total", model="ms-marco", status="ok")
    assert after - before == 2
    check(results, expected)


def test_async_rerank_on_both_transports(rerank_server):
    expected = cross_encoder_expected("bge-reranker-tiny")

    async def main(**transport):
        async with AsyncClient(rerank_server.url, **transport) as client:
            return await asyncio.gather(
                *(
                    client.rerank(expected["query"], expected["documents"], model="bge", top_n=3)
                    for _ in range(8)
                )
            )

    for transport in ({}, {"transport": "grpc", "grpc_target": rerank_server.grpc_target}):
        for results in asyncio.run(main(**transport)):
            check(results, expected, top_n=3)
    with Client(transport="grpc", grpc_target=rerank_server.grpc_target) as client:
        check(client.rerank(expected["query"], expected["documents"], model="bge"), expected)


def test_rerank_errors(rerank_server):
    with Client(rerank_server.url) as client:
        with pytest.raises(APIError) as refused:
            client.rerank("q", ["a"], model=MINILM_NAME)
        assert refused.value.status == 400 and refused.value.param == "model"
        assert "embedding model" in refused.value.message
        with pytest.raises(ValueError):
            client.rerank("q", ["a"], model="bge", top_n=0)
        with pytest.raises(TypeError):
            client.rerank("q", "a bare string", model="bge")
        kinds = {m.id: m.kind for m in client.models()}
    assert kinds == {"ms-marco": "rerank", "bge": "rerank", MINILM_NAME: "embedding"}


def test_langchain_compressor_keeps_the_best_documents(rerank_server):
    expected = cross_encoder_expected("bge-reranker-tiny")
    documents = [
        Document(page_content=text, metadata={"source": i}, id=str(i))
        for i, text in enumerate(expected["documents"])
    ]
    reranker = LangChainRerank(base_url=rerank_server.url, model="bge", top_n=3)
    ranking = [r["corpus_id"] for r in expected["ranking"]][:3]
    for kept in (
        reranker.compress_documents(documents, expected["query"]),
        asyncio.run(reranker.acompress_documents(documents, expected["query"])),
    ):
        assert [d.metadata["source"] for d in kept] == ranking
        for document in kept:
            i = document.metadata["source"]
            assert close(document.metadata["relevance_score"], expected["scores"][i])
            assert document.id == str(i)


def test_llama_index_postprocessor_reranks_nodes(rerank_server):
    expected = cross_encoder_expected("ms-marco-reranker-tiny")
    nodes = [
        NodeWithScore(node=TextNode(text=text, id_=f"node-{i}"), score=0.0)
        for i, text in enumerate(expected["documents"])
    ]
    reranker = LlamaIndexRerank(base_url=rerank_server.url, model="ms-marco", top_n=2)
    query = QueryBundle(query_str=expected["query"])
    ranking = [r["corpus_id"] for r in expected["ranking"]][:2]
    for kept in (
        reranker.postprocess_nodes(nodes, query_bundle=query),
        asyncio.run(reranker.apostprocess_nodes(nodes, query_bundle=query)),
    ):
        assert [n.node.node_id for n in kept] == [f"node-{i}" for i in ranking]
        for node in kept:
            i = int(node.node.node_id.split("-")[1])
            assert close(node.score, expected["scores"][i])
