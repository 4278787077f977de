"""`Client`: blocking calls, cut into requests sent side by side from a thread pool."""

from __future__ import annotations

import threading
import time
from array import array
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, List, Optional, Sequence, Tuple, TypeVar, overload

from ._base import (
    ClientBase,
    Texts,
    as_lists,
    as_numpy,
    check_top_n,
    document_list,
    ranked,
    text_list,
)
from ._errors import APIError
from ._http import HttpTransport
from ._models import Model, RerankResult
from ._request import EmbedOptions, RerankOptions

T = TypeVar("T")


class Client(ClientBase):
    """A blocking client of an embedrt server, safe to share between threads.

    Args:
        base_url: the server's HTTP address.
        api_key: sent as ``Authorization: Bearer`` (gRPC: ``authorization`` metadata).
        timeout: seconds one request may take.
        max_concurrency: the most requests in flight at once (and pooled connections).
        transport: ``"http"`` or ``"grpc"`` (needs the ``grpc`` extra and ``grpc_target``).
        grpc_target: the gRPC ``host:port`` when ``transport="grpc"``.
        batch_size: the most texts per request (the server's ``max_inputs`` caps it too).
        batch_tokens: the most estimated tokens per request, so long texts go in smaller ones.
        max_retries: how often a request refused with 429 or 503, or lost to a connection
            error, is sent again (with exponential backoff and jitter) before raising.

    Example:
        >>> from embedrt import Client
        >>> with Client("http://127.0.0.1:8080") as client:  # doctest: +SKIP
        ...     vectors = client.embed(["first text", "second text"])
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8080",
        api_key: Optional[str] = None,
        timeout: float = 60.0,
        max_concurrency: int = 8,
        *,
        transport: str = "http",
        grpc_target: Optional[str] = None,
        batch_size: int = 64,
        batch_tokens: int = 8192,
        max_retries: int = 8,
    ) -> None:
        super().__init__(
            base_url,
            api_key,
            timeout,
            max_concurrency,
            transport,
            grpc_target,
            batch_size,
            batch_tokens,
            max_retries,
        )
        self._transport: Any
        if transport == "grpc":
            from ._grpc import GrpcTransport

            self._transport = GrpcTransport(grpc_target or "", api_key, timeout)
        else:
            self._transport = HttpTransport(base_url, api_key, timeout, max_concurrency)
        self._pool: Optional[ThreadPoolExecutor] = None
        self._pool_lock = threading.Lock()

    @overload
    def embed(  # type: ignore[overload-overlap]
        self,
        texts: str,
        *,
        model: Optional[str] = ...,
        task: Optional[str] = ...,
        dimensions: Optional[int] = ...,
        normalized: bool = ...,
        late_chunking: bool = ...,
    ) -> List[float]: ...

    @overload
    def embed(
        self,
        texts: Sequence[str],
        *,
        model: Optional[str] = ...,
        task: Optional[str] = ...,
        dimensions: Optional[int] = ...,
        normalized: bool = ...,
        late_chunking: bool = ...,
    ) -> List[List[float]]: ...

    def embed(
        self,
        texts: Texts,
        *,
        model: Optional[str] = None,
        task: Optional[str] = None,
        dimensions: Optional[int] = None,
        normalized: bool = True,
        late_chunking: bool = False,
    ) -> Any:
        """Embeds ``texts``: one vector per text, in order (a bare string gives one vector).

        Any number of texts may be given: they are cut into requests by the server's limits
        and ``batch_size``/``batch_tokens``, sent up to ``max_concurrency`` at a time, and put
        back in order. With ``late_chunking`` the texts are chunks of one document and go in
        one request.

        Raises:
            APIError: the server refused the input (with its ``message``, ``code``, ``param``
                and ``status``), or kept refusing it after every retry.
            APIConnectionError: the server could not be reached after every retry.
        """
        listed, single = text_list(texts)
        options = EmbedOptions(model, task, dimensions, normalized, late_chunking)
        return as_lists(self._vectors(listed, options), single)

    def embed_numpy(
        self,
        texts: Texts,
        *,
        model: Optional[str] = None,
        task: Optional[str] = None,
        dimensions: Optional[int] = None,
        normalized: bool = True,
        late_chunking: bool = False,
    ) -> Any:
        """Embeds ``texts`` as `embed` does, into one ``(n, d)`` float32 numpy array.

        Raises:
            ImportError: numpy is not installed.
            APIError: as for `embed`.
        """
        listed, _ = text_list(texts)
        options = EmbedOptions(model, task, dimensions, normalized, late_chunking)
        return as_numpy(self._vectors(listed, options))

    def rerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        model: Optional[str] = None,
        top_n: Optional[int] = None,
        return_documents: bool = False,
        max_tokens_per_doc: Optional[int] = None,
        truncate: Optional[bool] = None,
        raw_scores: bool = False,
    ) -> List[RerankResult]:
        """Scores ``documents`` against ``query`` with a reranker (a cross-encoder), best first.

        Any number of documents may be given: they are cut into requests by the model's
        ``max_inputs`` and ``batch_size``/``batch_tokens``, sent side by side, and the answers
        joined and cut to the best ``top_n`` here (each pair's score does not depend on the
        others, so the result is the one a single request would give). Each result names its
        document by ``index`` into ``documents``.

        Args:
            query: what the documents are scored against.
            documents: the texts to rank.
            model: the reranker's name (the only model when None and one is served).
            top_n: keep the best this many; all when None.
            return_documents: put each document's text in its result.
            max_tokens_per_doc: cut each document to this many tokens first.
            truncate: cut (True) or refuse (False) pairs over the model's limit; the
                server's default when None.
            raw_scores: the model's logits instead of its scores.

        Raises:
            ValueError: ``top_n`` is below 1.
            TypeError: ``documents`` is a bare string or holds a non-string.
            APIError: the server refused the request (an embedding model, a bad option), or
                kept refusing it after every retry.
            APIConnectionError: the server could not be reached after every retry.

        Example:
            >>> from embedrt import Client
            >>> with Client("http://127.0.0.1:8080") as client:  # doctest: +SKIP
            ...     best = client.rerank("capital of France?", ["Paris", "Berlin"], top_n=1)
            ...     best[0].index
            0
        """
        check_top_n(top_n)
        listed = document_list(documents)
        if not listed:
            return []
        if self._models is None:
            self.models()
        options = RerankOptions(model, max_tokens_per_doc, truncate, raw_scores)
        ranges = self._text_ranges(listed, model)

        def send(bounds: Tuple[int, int]) -> Tuple[int, List[RerankResult]]:
            start, end = bounds
            part = self._with_retries(
                lambda: self._transport.rerank(query, listed[start:end], options)
            )
            return start, part

        if len(ranges) == 1:
            parts = [send(ranges[0])]
        else:
            parts = list(self._thread_pool().map(send, ranges))
        return ranked(parts, listed, top_n, return_documents)

    def models(self) -> List[Model]:
        """Lists the models the server serves, with their tasks, sizes and limits.

        Raises:
            APIError: as for `embed`.
        """
        models: List[Model] = self._with_retries(self._transport.models)
        self._models = models
        return list(models)

    def close(self) -> None:
        """Closes the connections and the thread pool."""
        if self._pool is not None:
            self._pool.shutdown()
        self._transport.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _vectors(self, texts: List[str], options: EmbedOptions) -> List[array[float]]:
        if not texts:
            return []
        if self._models is None:
            self.models()
        ranges = self._ranges(texts, options)
        if len(ranges) == 1:
            return self._send(texts, options)

        def send(bounds: Tuple[int, int]) -> List[array[float]]:
            return self._send(texts[bounds[0] : bounds[1]], options)

        vectors: List[array[float]] = []
        for part in self._thread_pool().map(send, ranges):
            vectors.extend(part)
        return vectors

    def _thread_pool(self) -> ThreadPoolExecutor:
        """The pool requests of one call are sent side by side from, started on first use."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_concurrency, "embedrt-client")
            return self._pool

    def _send(self, texts: Sequence[str], options: EmbedOptions) -> List[array[float]]:
        return self._with_retries(lambda: self._transport.embed(texts, options))

    def _with_retries(self, call: Callable[[], T]) -> T:
        retries = 0
        while True:
            try:
                return call()
            except APIError as error:
                wait = self.retry.delay(retries, error)
                if wait is None:
                    raise
            time.sleep(wait)
            retries += 1
