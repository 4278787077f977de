"""LangChain embeddings and a reranking document compressor backed by an embedrt server (the
``langchain`` extra).

Example:
    >>> from embedrt.langchain import EmbedrtEmbeddings, EmbedrtRerank
    >>> embeddings = EmbedrtEmbeddings(base_url="http://127.0.0.1:8080", model="jina-embeddings-v3")
    >>> vectors = embeddings.embed_documents(["a passage", "another"])  # doctest: +SKIP
    >>> reranker = EmbedrtRerank(base_url="http://127.0.0.1:8080", model="bge-reranker", top_n=3)
    >>> best = reranker.compress_documents(documents, "the question")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

try:
    from langchain_core.callbacks import Callbacks
    from langchain_core.documents import BaseDocumentCompressor, Document
    from langchain_core.embeddings import Embeddings
    from pydantic import Field, PrivateAttr
except ImportError as missing:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "embedrt.langchain needs langchain-core: pip install 'embedrt[langchain]'"
    ) from missing

from ._integration import DOCUMENT_TASK, QUERY_TASK, IntegrationClients
from ._models import RerankResult

__all__ = ["EmbedrtEmbeddings", "EmbedrtRerank"]


class EmbedrtEmbeddings(Embeddings):
    """A LangChain ``Embeddings`` that embeds through `embedrt.Client` (and `AsyncClient` for
    the ``a``-methods), so documents are batched and sent concurrently.

    Documents are embedded with ``document_task`` and queries with ``query_task`` on models
    that have those tasks (jina-embeddings-v3's retrieval adapters by default); on models
    without tasks nothing task-specific is sent. Pass ``None`` to send no task.

    Args:
        base_url: the server's HTTP address.
        api_key: the server's API key, if it wants one.
        model: the served model; ``None`` when the server serves one.
        document_task: the task of `embed_documents`.
        query_task: the task of `embed_query`.
        dimensions: a Matryoshka size, if wanted.
        **client_options: any other argument of `embedrt.Client` (``timeout``,
            ``max_concurrency``, ``transport``, ``grpc_target``, ``batch_size``, ...).
    """

    def __init__(
        self,
        *,
        base_url: str = "http://127.0.0.1:8080",
        api_key: Optional[str] = None,
        model: Optional[str] = None,
        document_task: Optional[str] = DOCUMENT_TASK,
        query_task: Optional[str] = QUERY_TASK,
        dimensions: Optional[int] = None,
        **client_options: Any,
    ) -> None:
        self.model = model
        self.document_task = document_task
        self.query_task = query_task
        self.dimensions = dimensions
        self._clients = IntegrationClients(
            model, dict(base_url=base_url, api_key=api_key, **client_options)
        )

    def embed_documents(self, texts: List[str]) -> List[List[float]]:
        """Embeds documents (with ``document_task`` where the model has it)."""
        task = self._clients.task(self.document_task)
        return self._clients.blocking.embed(
            list(texts), model=self.model, task=task, dimensions=self.dimensions
        )

    def embed_query(self, text: str) -> List[float]:
        """Embeds a query (with ``query_task`` where the model has it)."""
        task = self._clients.task(self.query_task)
        return self._clients.blocking.embed(
            text, model=self.model, task=task, dimensions=self.dimensions
        )

    async def aembed_documents(self, texts: List[str]) -> List[List[float]]:
        """Embeds documents without blocking the event loop."""
        task = await self._clients.atask(self.document_task)
        return await self._clients.asynchronous.embed(
            list(texts), model=self.model, task=task, dimensions=self.dimensions
        )

    async def aembed_query(self, text: str) -> List[float]:
        """Embeds a query without blocking the event loop."""
        task = await self._clients.atask(self.query_task)
        return await self._clients.asynchronous.embed(
            text, model=self.model, task=task, dimensions=self.dimensions
        )


class EmbedrtRerank(BaseDocumentCompressor):
    """A LangChain document compressor that reranks with a cross-encoder served by embedrt
    (as ``CohereRerank`` does with Cohere's API): the best ``top_n`` documents for the query,
    best first, each with its ``relevance_score`` in its metadata. Put it in a
    ``ContextualCompressionRetriever`` behind any retriever.

    Args:
        base_url: the server's HTTP address.
        api_key: the server's API key, if it wants one.
        model: the served reranker; ``None`` when the server serves one.
        top_n: how many documents to keep; ``None`` keeps them all, reordered.
        client_options: any other argument of `embedrt.Client` (``timeout``, ``transport``...).
    """

    base_url: str = "http://127.0.0.1:8080"
    api_key: Optional[str] = None
    model: Optional[str] = None
    top_n: Optional[int] = 3
    client_options: Dict[str, Any] = Field(default_factory=dict)

    _clients: IntegrationClients = PrivateAttr()

    def model_post_init(self, context: Any) -> None:
        """Makes the clients once the fields are set."""
        self._clients = IntegrationClients(
            self.model, dict(base_url=self.base_url, api_key=self.api_key, **self.client_options)
        )

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Optional[Callbacks] = None,
    ) -> Sequence[Document]:
        """The best ``top_n`` of ``documents`` for ``query``, best first, scored."""
        if not documents:
            return []
        results = self._clients.blocking.rerank(
            query, [d.page_content for d in documents], model=self.model, top_n=self.top_n
        )
        return _scored(documents, results)

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Optional[Callbacks] = None,
    ) -> Sequence[Document]:
        """`compress_documents` without blocking the event loop."""
        if not documents:
            return []
        results = await self._clients.asynchronous.rerank(
            query, [d.page_content for d in documents], model=self.model, top_n=self.top_n
        )
        return _scored(documents, results)


def _scored(documents: Sequence[Document], results: List[RerankResult]) -> List[Document]:
    """Copies of the ranked documents, in rank order, with ``relevance_score`` in metadata."""
    scored = []
    for result in results:
        document = documents[result.index]
        scored.append(
            Document(
                page_content=document.page_content,
                metadata={**document.metadata, "relevance_score": result.relevance_score},
                id=document.id,
            )
        )
    return scored
