"""`AsyncClient`: asyncio calls, cut into concurrent requests, small calls coalesced."""

from __future__ import annotations

import asyncio
from array import array
from typing import Any, Awaitable, Callable, List, Optional, Sequence, TypeVar, overload

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
from ._coalesce import Coalescer
from ._errors import APIError
from ._http import AsyncHttpTransport
from ._models import Model, RerankResult
from ._request import EmbedOptions, RerankOptions

T = TypeVar("T")


class AsyncClient(ClientBase):
    """An asyncio client of an embedrt server, for use from one event loop.

    Takes the arguments of `Client`, and:

    Args:
        coalesce_ms: how long a call of fewer than ``batch_size`` texts waits for other
            concurrent calls with the same options to share its request (a request also leaves
            as soon as it holds ``batch_size`` texts). 0 sends every call on its own.

    Example:
        >>> import asyncio
        >>> from embedrt import AsyncClient
        >>> async def main():
        ...     async with AsyncClient("http://127.0.0.1:8080") as client:
        ...         # 200 callers, one text each: a handful of requests reach the server.
        ...         return await asyncio.gather(*(client.embed(f"text {i}") for i in range(200)))
        >>> vectors = asyncio.run(main())  # doctest: +SKIP
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
        coalesce_ms: float = 2.0,
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
        if coalesce_ms < 0:
            raise ValueError(f"coalesce_ms must not be negative, not {coalesce_ms}")
        self.coalesce_ms = coalesce_ms
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._transport: Any = None
        self._coalescer: Optional[Coalescer] = None
        self._slots: Optional[asyncio.Semaphore] = None
        self._listing: Optional["asyncio.Future[List[Model]]"] = None

    @overload
    async def embed(  # type: ignore[overload-overlap]
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
    async def embed(
        self,
        texts: Sequence[str],
        *,
        model: Optional[str] = ...,
        task: Optional[str] = ...,
        dimensions: Optional[int] = ...,
        normalized: bool = ...,
        late_chunking: bool = ...,
    ) -> List[List[float]]: ...

    async def embed(
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

        As `Client.embed`, and concurrent calls of few texts share requests (``coalesce_ms``).

        Raises:
            APIError: as for `Client.embed`.
        """
        listed, single = text_list(texts)
        options = EmbedOptions(model, task, dimensions, normalized, late_chunking)
        return as_lists(await self._vectors(listed, options), single)

    async def embed_numpy(
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
            APIError: as for `Client.embed`.
        """
        listed, _ = text_list(texts)
        options = EmbedOptions(model, task, dimensions, normalized, late_chunking)
        return as_numpy(await self._vectors(listed, options))

    async def rerank(
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
        """Scores ``documents`` against ``query`` with a reranker, best first.

        As `Client.rerank`: any number of documents, cut into concurrent requests by the
        model's limits, joined and cut to ``top_n`` here.

        Raises:
            APIError: as for `Client.rerank`.
        """
        check_top_n(top_n)
        listed = document_list(documents)
        if not listed:
            return []
        self._bind()
        await self._know_models()
        options = RerankOptions(model, max_tokens_per_doc, truncate, raw_scores)
        ranges = self._text_ranges(listed, model)

        def send(start: int, end: int) -> Awaitable[List[RerankResult]]:
            return self._limited(
                lambda transport: transport.rerank(query, listed[start:end], options)
            )

        parts = await asyncio.gather(*(send(start, end) for start, end in ranges))
        starts = [start for start, _ in ranges]
        return ranked(list(zip(starts, parts)), listed, top_n, return_documents)

    async def models(self) -> List[Model]:
        """Lists the models the server serves, with their tasks, sizes and limits.

        Raises:
            APIError: as for `Client.embed`.
        """
        transport = self._bind()
        models: List[Model] = await self._with_retries(transport.models)
        self._models = models
        return list(models)

    async def close(self) -> None:
        """Closes the connections."""
        if self._transport is not None and self._loop is asyncio.get_running_loop():
            await self._transport.close()
        self._loop = self._transport = None

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _bind(self) -> Any:
        """The transport of the running event loop.

        Connections, the concurrency limit and pending coalesced calls belong to one event
        loop; a client used from a new loop (a second ``asyncio.run``) starts them afresh.
        """
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._coalescer = self._slots = self._listing = None
            if self.transport_name == "grpc":
                from ._grpc import AsyncGrpcTransport

                self._transport = AsyncGrpcTransport(
                    self.grpc_target or "", self.api_key, self.timeout
                )
            else:
                self._transport = AsyncHttpTransport(
                    self.base_url, self.api_key, self.timeout, self.max_concurrency
                )
        return self._transport

    async def _vectors(self, texts: List[str], options: EmbedOptions) -> List[array[float]]:
        if not texts:
            return []
        self._bind()
        await self._know_models()
        size = self._request_size(options.model)
        if self.coalesce_ms > 0 and not options.late_chunking and len(texts) < size:
            if self._coalescer is None:
                self._coalescer = Coalescer(self._send, self.coalesce_ms / 1000, self.batch_tokens)
            return await self._coalescer.embed(texts, options, size)
        parts = await asyncio.gather(
            *(self._send(texts[start:end], options) for start, end in self._ranges(texts, options))
        )
        return [vector for part in parts for vector in part]

    async def _know_models(self) -> None:
        """Lists the models once, however many calls arrive before the answer."""
        if self._models is not None:
            return
        if self._listing is None:
            self._listing = asyncio.ensure_future(self.models())
        try:
            await asyncio.shield(self._listing)
        except BaseException:
            self._listing = None  # let a later call try again
            raise

    async def _send(self, texts: Sequence[str], options: EmbedOptions) -> List[array[float]]:
        return await self._limited(lambda transport: transport.embed(texts, options))

    async def _limited(self, call: Callable[[Any], Awaitable[T]]) -> T:
        """``call(transport)`` with retries, within the ``max_concurrency`` requests in flight."""
        transport = self._bind()
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrency)
        async with self._slots:
            return await self._with_retries(lambda: call(transport))

    async def _with_retries(self, call: Callable[[], Awaitable[T]]) -> T:
        retries = 0
        while True:
            try:
                return await call()
            except APIError as error:
                wait = self.retry.delay(retries, error)
                if wait is None:
                    raise
            await asyncio.sleep(wait)
            retries += 1
