"""The HTTP transport: ``POST /v1/embeddings``, ``POST /v1/rerank`` and ``GET /v1/models``
over httpx."""

from __future__ import annotations

import base64
import sys
from array import array
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Sequence

import httpx

from ._errors import APIConnectionError, APIError
from ._models import Model, RerankResult
from ._request import EmbedOptions, RerankOptions

EMBED_PATH = "/v1/embeddings"
RERANK_PATH = "/v1/rerank"
MODELS_PATH = "/v1/models"


class HttpTransport:
    """Blocking calls over one pooled, keep-alive ``httpx.Client`` (safe to share by threads)."""

    def __init__(
        self, base_url: str, api_key: Optional[str], timeout: float, connections: int
    ) -> None:
        self._http = httpx.Client(**_client_settings(base_url, api_key, timeout, connections))

    def embed(self, texts: Sequence[str], options: EmbedOptions) -> List[array[float]]:
        """Sends one request; returns its vectors in order.

        Raises:
            APIError: the server answered with an error.
            APIConnectionError: no answer came.
        """
        with _connection_errors():
            response = self._http.post(EMBED_PATH, json=options.http_body(texts))
        return _vectors(_answer(response))

    def rerank(
        self, query: str, documents: Sequence[str], options: RerankOptions
    ) -> List[RerankResult]:
        """Sends one rerank request; returns its results (errors as in `embed`)."""
        with _connection_errors():
            response = self._http.post(RERANK_PATH, json=options.http_body(query, documents))
        return _rerank_results(_answer(response))

    def models(self) -> List[Model]:
        """Lists the served models (``GET /v1/models``)."""
        with _connection_errors():
            response = self._http.get(MODELS_PATH)
        return _models(_answer(response))

    def close(self) -> None:
        """Closes the pooled connections."""
        self._http.close()


class AsyncHttpTransport:
    """asyncio calls over one pooled, keep-alive ``httpx.AsyncClient``."""

    def __init__(
        self, base_url: str, api_key: Optional[str], timeout: float, connections: int
    ) -> None:
        self._http = httpx.AsyncClient(**_client_settings(base_url, api_key, timeout, connections))

    async def embed(self, texts: Sequence[str], options: EmbedOptions) -> List[array[float]]:
        """Sends one request; returns its vectors in order (errors as in `HttpTransport.embed`)."""
        with _connection_errors():
            response = await self._http.post(EMBED_PATH, json=options.http_body(texts))
        return _vectors(_answer(response))

    async def rerank(
        self, query: str, documents: Sequence[str], options: RerankOptions
    ) -> List[RerankResult]:
        """Sends one rerank request; returns its results (errors as in `HttpTransport.embed`)."""
        with _connection_errors():
            response = await self._http.post(RERANK_PATH, json=options.http_body(query, documents))
        return _rerank_results(_answer(response))

    async def models(self) -> List[Model]:
        """Lists the served models (``GET /v1/models``)."""
        with _connection_errors():
            response = await self._http.get(MODELS_PATH)
        return _models(_answer(response))

    async def close(self) -> None:
        """Closes the pooled connections."""
        await self._http.aclose()


@contextmanager
def _connection_errors() -> Iterator[None]:
    """Turns httpx's failures to get an answer into `APIConnectionError`."""
    try:
        yield
    except httpx.TransportError as error:
        raise APIConnectionError(f"{type(error).__name__}: {error}") from error


def _client_settings(
    base_url: str, api_key: Optional[str], timeout: float, connections: int
) -> Dict[str, Any]:
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    return {
        "base_url": base_url.rstrip("/"),
        "headers": headers,
        "timeout": timeout,
        "limits": httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    }


def _answer(response: httpx.Response) -> Any:
    """The decoded JSON of a 200 answer; raises the server's error for any other status."""
    if response.status_code == 200:
        return response.json()
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    raise APIError.from_body(
        response.status_code, body, _retry_after(response.headers.get("retry-after"))
    )


def _retry_after(header: Optional[str]) -> Optional[float]:
    """Seconds from a ``Retry-After`` header in its delay-seconds form (dates are ignored)."""
    try:
        return max(0.0, float(header)) if header is not None else None
    except ValueError:
        return None


def _vectors(body: Dict[str, Any]) -> List[array[float]]:
    items = sorted(body["data"], key=lambda item: item["index"])
    return [_float32(item["embedding"]) for item in items]


def _rerank_results(body: Dict[str, Any]) -> List[RerankResult]:
    return [
        RerankResult(index=int(item["index"]), relevance_score=float(item["relevance_score"]))
        for item in body["results"]
    ]


def _float32(encoded: str) -> array[float]:
    """Decodes a base64 vector of little-endian float32 values."""
    vector: array[float] = array("f")
    vector.frombytes(base64.b64decode(encoded))
    if sys.byteorder == "big":
        vector.byteswap()
    return vector


def _models(body: Dict[str, Any]) -> List[Model]:
    return [Model.from_json(entry) for entry in body["data"]]
