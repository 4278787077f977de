"""Drives a running embedrt server that serves one reranker with the clients rerankers are
called through: the official `cohere` SDK (v2 and v1 clients), LlamaIndex's TEI rerank
postprocessor, and the request Open WebUI's external reranker sends.

Usage: rerank_clients.py BASE_URL MODEL EXPECTED_JSON

Checks each client's ranking and scores against sentence-transformers' CrossEncoder outputs.
Prints "ok" and exits 0 when everything holds.
"""

import json
import sys

import cohere
import httpx
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from llama_index.postprocessor.tei_rerank import TextEmbeddingInference


def close(got, want):
    return abs(got - want) <= 1e-4 * max(1.0, abs(want))


def check(pairs, expected, top_n, what):
    """`pairs`: (index, score) best first."""
    ranking = [r["corpus_id"] for r in expected["ranking"]][:top_n]
    assert [index for index, _ in pairs] == ranking, (what, pairs, ranking)
    for index, score in pairs:
        assert close(score, expected["scores"][index]), (what, index, score)


def main():
    base_url, model, expected_path = sys.argv[1:4]
    expected = json.load(open(expected_path))
    query, documents = expected["query"], expected["documents"]

    # Cohere's SDK, v2 (POST /v2/rerank), as LangChain's CohereRerank calls it.
    v2 = cohere.ClientV2(api_key="unused", base_url=base_url)
    answer = v2.rerank(model=model, query=query, documents=documents, top_n=3)
    check([(r.index, r.relevance_score) for r in answer.results], expected, 3, "cohere v2")
    # The v1 client (POST /v1/rerank), asking for the documents back.
    v1 = cohere.Client(api_key="unused", base_url=base_url)
    answer = v1.rerank(model=model, query=query, documents=documents, return_documents=True)
    check([(r.index, r.relevance_score) for r in answer.results], expected, None, "cohere v1")
    assert [r.document.text for r in answer.results] == [
        documents[r.index] for r in answer.results
    ]
    try:
        v2.rerank(model="no-such-model", query=query, documents=documents)
        raise AssertionError("an unknown model was accepted")
    except cohere.core.api_error.ApiError as error:
        assert error.status_code == 404, error

    # LlamaIndex's TEI reranker (POST /rerank with TEI's body, no model: the server's only one).
    tei = TextEmbeddingInference(base_url=base_url, top_n=2)
    nodes = [
        NodeWithScore(node=TextNode(text=text, id_=str(i)), score=0.0)
        for i, text in enumerate(documents)
    ]
    kept = tei.postprocess_nodes(nodes, query_bundle=QueryBundle(query_str=query))
    check([(int(n.node.node_id), n.score) for n in kept], expected, 2, "llama-index tei")

    # Open WebUI's external reranker: every document with top_n, scores read back in order.
    response = httpx.post(
        f"{base_url}/v1/rerank",
        headers={"Content-Type": "application/json", "Authorization": "Bearer unused"},
        json={"model": model, "query": query, "documents": documents, "top_n": len(documents)},
    )
    response.raise_for_status()
    data = response.json()
    scores = [r["relevance_score"] for r in sorted(data["results"], key=lambda r: r["index"])]
    assert all(close(got, want) for got, want in zip(scores, expected["scores"])), scores
    assert len(scores) == len(documents)
    print("ok")


if __name__ == "__main__":
    main()
