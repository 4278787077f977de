"""A LlamaIndex embedding model and a reranking node postprocessor backed by an embedrt
server (the ``llama-index`` extra).

Example:
    >>> from embedrt.llama_index import EmbedrtEmbedding, EmbedrtRerank
    >>> embed_model = EmbedrtEmbedding(base_url="http://127.0.0.1:8080", model="jina-embeddings-v3")
    >>> vector = embed_model.get_query_embedding("what is late chunking?")  # doctest: +SKIP
    >>> reranker = EmbedrtRerank(base_url="http://127.0.0.1:8080", model="bge-reranker", top_n=2)
    >>> engine = index.as_query_engine(node_postprocessors=[reranker])  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

try:
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.bridge.pydantic import Field, PrivateAttr
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
except ImportError as missing:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "embedrt.llama_index needs llama-index-core: pip install 'embedrt[llama-index]'"
    ) from missing

from ._integration import DOCUMENT_TASK, QUERY_TASK, IntegrationClients
from ._models import RerankResult

__all__ = ["EmbedrtEmbedding", "EmbedrtRerank"]


class EmbedrtEmbedding(BaseEmbedding):
    """A LlamaIndex ``BaseEmbedding`` that embeds through `embedrt.Client` (and
    `AsyncClient` for the ``a``-methods), so nodes are batched and sent concurrently.

    Texts (documents, nodes) are embedded with ``document_task`` and queries with
    ``query_task`` on models that have those tasks (jina-embeddings-v3's retrieval adapters by
    default); on models without tasks nothing task-specific is sent. ``embed_batch_size``
    defaults to 1024: LlamaIndex hands texts over in batches of that size, one at a time, and
    the client then splits each batch into concurrent requests itself.
    """

    base_url: str = Field(default="http://127.0.0.1:8080", description="The server's address.")
    api_key: Optional[str] = Field(default=None, description="The server's API key, if any.")
    model: Optional[str] = Field(
        default=None, description="The served model; None when the server serves one."
    )
    document_task: Optional[str] = Field(default=DOCUMENT_TASK, description="Task of texts.")
    query_task: Optional[str] = Field(default=QUERY_TASK, description="Task of queries.")
    dimensions: Optional[int] = Field(default=None, description="A Matryoshka size.")
    timeout: float = Field(default=60.0, description="Seconds one request may take.")
    max_concurrency: int = Field(default=8, description="Most requests in flight at once.")
    transport: str = Field(default="http", description="'http' or 'grpc'.")
    grpc_target: Optional[str] = Field(default=None, description="host:port for gRPC.")

    _clients: IntegrationClients = PrivateAttr()

    def __init__(self, **data: Any) -> None:
        data.setdefault("model_name", data.get("model") or "embedrt")
        data.setdefault("embed_batch_size", 1024)
        super().__init__(**data)
        self._clients = _clients_of(self, max_concurrency=self.max_concurrency)

    @classmethod
    def class_name(cls) -> str:
        """The name LlamaIndex records for this class."""
        return "EmbedrtEmbedding"

    def _get_query_embedding(self, query: str) -> List[float]:
        task = self._clients.task(self.query_task)
        return self._clients.blocking.embed(
            query, model=self.model, task=task, dimensions=self.dimensions
        )

    def _get_text_embedding(self, text: str) -> List[float]:
        task = self._clients.task(self.document_task)
        return self._clients.blocking.embed(
            text, model=self.model, task=task, dimensions=self.dimensions
        )

    def _get_text_embeddings(self, texts: List[str]) -> List[List[float]]:
        task = self._clients.task(self.document_task)
        return self._clients.blocking.embed(
            texts, model=self.model, task=task, dimensions=self.dimensions
        )

    async def _aget_query_embedding(self, query: str) -> List[float]:
        task = await self._clients.atask(self.query_task)
        return await self._clients.asynchronous.embed(
            query, model=self.model, task=task, dimensions=self.dimensions
        )

    async def _aget_text_embedding(self, text: str) -> List[float]:
        task = await self._clients.atask(self.document_task)
        return await self._clients.asynchronous.embed(
            text, model=self.model, task=task, dimensions=self.dimensions
        )

    async def _aget_text_embeddings(self, texts: List[str]) -> List[List[float]]:
        task = await self._clients.atask(self.document_task)
        return await self._clients.asynchronous.embed(
            texts, model=self.model, task=task, dimensions=self.dimensions
        )


class EmbedrtRerank(BaseNodePostprocessor):
    """A LlamaIndex node postprocessor that reranks retrieved nodes with a cross-encoder served
    by embedrt: the best ``top_n`` nodes for the query, best first, each node's score replaced
    by its relevance score.
    """

    base_url: str = Field(default="http://127.0.0.1:8080", description="The server's address.")
    api_key: Optional[str] = Field(default=None, description="The server's API key, if any.")
    model: Optional[str] = Field(
        default=None, description="The served reranker; None when the server serves one."
    )
    top_n: int = Field(default=2, description="How many nodes to keep.")
    timeout: float = Field(default=60.0, description="Seconds one request may take.")
    transport: str = Field(default="http", description="'http' or 'grpc'.")
    grpc_target: Optional[str] = Field(default=None, description="host:port for gRPC.")

    _clients: IntegrationClients = PrivateAttr()

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        self._clients = _clients_of(self)

    @classmethod
    def class_name(cls) -> str:
        """The name LlamaIndex records for this class."""
        return "EmbedrtRerank"

    def _postprocess_nodes(
        self, nodes: List[NodeWithScore], query_bundle: Optional[QueryBundle] = None
    ) -> List[NodeWithScore]:
        if not nodes:
            return []
        query = _query_of(query_bundle)
        results = self._clients.blocking.rerank(
            query, _texts(nodes), model=self.model, top_n=self.top_n
        )
        return _rescored(nodes, results)

    async def _apostprocess_nodes(
        self, nodes: List[NodeWithScore], query_bundle: Optional[QueryBundle] = None
    ) -> List[NodeWithScore]:
        if not nodes:
            return []
        query = _query_of(query_bundle)
        results = await self._clients.asynchronous.rerank(
            query, _texts(nodes), model=self.model, top_n=self.top_n
        )
        return _rescored(nodes, results)


def _clients_of(settings: Any, **more: Any) -> IntegrationClients:
    """The clients of an integration from its connection fields (``base_url``, ``api_key``,
    ``timeout``, ``transport``, ``grpc_target``) and ``more`` client arguments."""
    return IntegrationClients(
        settings.model,
        dict(
            base_url=settings.base_url,
            api_key=settings.api_key,
            timeout=settings.timeout,
            transport=settings.transport,
            grpc_target=settings.grpc_target,
            **more,
        ),
    )


def _query_of(query_bundle: Optional[QueryBundle]) -> str:
    if query_bundle is None:
        raise ValueError("EmbedrtRerank needs the query (a QueryBundle) to rerank nodes")
    return query_bundle.query_str


def _texts(nodes: Sequence[NodeWithScore]) -> List[str]:
    return [node.node.get_content(metadata_mode=MetadataMode.EMBED) for node in nodes]


def _rescored(nodes: Sequence[NodeWithScore], results: List[RerankResult]) -> List[NodeWithScore]:
    return [
        NodeWithScore(node=nodes[result.index].node, score=result.relevance_score)
        for result in results
    ]
