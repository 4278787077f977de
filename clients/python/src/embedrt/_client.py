"""`Client`: blocking calls, cut into requests sent side by side from a thread pool."""

from __future__ import annotations

import threading
import time
from array import array
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, List, Optional, Sequence, Tuple, TypeVar, overload

from ._base import ClientBase, Texts, as_lists, as_numpy, text_list
from ._errors import APIError
from ._http import HttpTransport
from ._models import Model
from ._request import EmbedOptions

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
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_concurrency, "embedrt-client")

        def send(bounds: Tuple[int, int]) -> List[array[float]]:
            return self._send(texts[bounds[0] : bounds[1]], options)

        vectors: List[array[float]] = []
        for part in self._pool.map(send, ranges):
            vectors.extend(part)
        return vectors

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
