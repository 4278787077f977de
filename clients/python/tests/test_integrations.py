"""LangChain and LlamaIndex, driven through their own public interfaces."""

from __future__ import annotations

import asyncio

import numpy as np
from conftest import MINILM_NAME
from helpers import as_array

from embedrt import Client
from embedrt.langchain import EmbedrtEmbeddings
from embedrt.llama_index import EmbedrtEmbedding

DOCUMENTS = [
    "Paris is the capital of France.",
    "The mitochondria is the powerhouse of the cell.",
    "Rust guarantees memory safety without a garbage collector.",
]
QUERY = "Which language is memory safe?"


def direct(server, texts, **options):
    with Client(server.url) as client:
        return as_array(client.embed(texts, **options))


def test_langchain_uses_the_retrieval_adapters_on_jina(server):
    embeddings = EmbedrtEmbeddings(base_url=server.url, model="jina")
    documents = as_array(embeddings.embed_documents(DOCUMENTS))
    query = as_array([embeddings.embed_query(QUERY)])
    np.testing.assert_array_equal(
        documents, direct(server, DOCUMENTS, model="jina", task="retrieval.passage")
    )
    np.testing.assert_array_equal(
        query, direct(server, [QUERY], model="jina", task="retrieval.query")
    )
    # The adapters differ, so the choice is visible.
    assert not np.allclose(query, direct(server, [QUERY], model="jina", task="retrieval.passage"))
    asynchronous = asyncio.run(embeddings.aembed_documents(DOCUMENTS))
    np.testing.assert_allclose(as_array(asynchronous), documents, atol=2e-5)


def test_langchain_sends_no_task_to_a_model_without_tasks(server):
    embeddings = EmbedrtEmbeddings(base_url=server.url, model=MINILM_NAME)
    np.testing.assert_array_equal(
        as_array(embeddings.embed_documents(DOCUMENTS)),
        direct(server, DOCUMENTS, model=MINILM_NAME),
    )
    query = asyncio.run(embeddings.aembed_query(QUERY))
    np.testing.assert_allclose(query, direct(server, [QUERY], model=MINILM_NAME)[0], atol=2e-5)


def test_langchain_vector_store_finds_the_right_document(server):
    from langchain_core.vectorstores import InMemoryVectorStore

    store = InMemoryVectorStore(EmbedrtEmbeddings(base_url=server.url, model=MINILM_NAME))
    store.add_texts(DOCUMENTS)
    assert store.similarity_search(QUERY, k=1)[0].page_content == DOCUMENTS[2]


def test_llama_index_uses_the_retrieval_adapters_on_jina(server):
    model = EmbedrtEmbedding(base_url=server.url, model="jina")
    texts = as_array(model.get_text_embedding_batch(DOCUMENTS))
    query = as_array([model.get_query_embedding(QUERY)])
    np.testing.assert_array_equal(
        texts, direct(server, DOCUMENTS, model="jina", task="retrieval.passage")
    )
    np.testing.assert_array_equal(
        query, direct(server, [QUERY], model="jina", task="retrieval.query")
    )
    asynchronous = asyncio.run(model.aget_query_embedding(QUERY))
    np.testing.assert_allclose([asynchronous], query, atol=2e-5)
    batch = asyncio.run(model.aget_text_embedding_batch(DOCUMENTS))
    np.testing.assert_allclose(as_array(batch), texts, atol=2e-5)


def test_llama_index_retrieves_with_a_model_without_tasks(server):
    from llama_index.core import Document, VectorStoreIndex

    embed_model = EmbedrtEmbedding(base_url=server.url, model=MINILM_NAME)
    index = VectorStoreIndex.from_documents(
        [Document(text=text) for text in DOCUMENTS], embed_model=embed_model
    )
    found = index.as_retriever(similarity_top_k=1).retrieve(QUERY)
    assert found[0].node.get_content() == DOCUMENTS[2]
    np.testing.assert_array_equal(
        as_array([embed_model.get_query_embedding(QUERY)]),
        direct(server, [QUERY], model=MINILM_NAME),
    )
