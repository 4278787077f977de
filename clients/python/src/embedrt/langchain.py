"""LangChain embeddings backed by an embedrt server (the ``langchain`` extra).

Example:
    >>> from embedrt.langchain import EmbedrtEmbeddings
    >>> embeddings = EmbedrtEmbeddings(base_url="http://127.0.0.1:8080", model="jina-embeddings-v3")
    >>> vectors = embeddings.embed_documents(["a passage", "another"])  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, List, Optional

try:
    from langchain_core.embeddings import Embeddings
except ImportError as missing:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "embedrt.langchain needs langchain-core: pip install 'embedrt[langchain]'"
    ) from missing

from ._integration import DOCUMENT_TASK, QUERY_TASK, IntegrationClients

__all__ = ["EmbedrtEmbeddings"]


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
