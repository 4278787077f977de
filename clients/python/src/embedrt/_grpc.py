"""The gRPC transport: ``embedrt.v1.Embedder`` over grpcio (the ``grpc`` extra).

The message classes are built at import from the proto's compiled descriptor, shipped as
``_proto/embedrt_v1.binpb``, rather than from generated ``_pb2`` modules: generated code pins
the protobuf runtime to the generator's release line, the descriptor works with any protobuf
from 4.23 on. The package's tests check that the file matches ``api/proto``.
"""

from __future__ import annotations

from array import array
from contextlib import contextmanager
from importlib import resources
from typing import Any, Iterator, List, Optional, Sequence, Tuple

try:
    import grpc  # type: ignore[import-untyped]
    import grpc.aio  # type: ignore[import-untyped]
    from google.protobuf import (  # type: ignore[import-untyped]
        descriptor_pb2,
        descriptor_pool,
        message_factory,
    )
except ImportError as missing:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "transport='grpc' needs grpcio and protobuf: pip install 'embedrt[grpc]'"
    ) from missing

from ._errors import APIConnectionError, APIError
from ._models import Model, RerankResult
from ._request import EmbedOptions, RerankOptions

SERVICE = "/embedrt.v1.Embedder/"

# gRPC status -> the HTTP status the same refusal has in the HTTP API, so that retries and
# `APIError.status` mean the same on both transports.
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.OUT_OF_RANGE: 413,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
}

# Large batches of large vectors exceed grpcio's 4 MiB default.
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 256 << 20),
    ("grpc.max_send_message_length", 256 << 20),
]


MESSAGES = (
    "EmbedRequest",
    "EmbedResponse",
    "ListModelsRequest",
    "ListModelsResponse",
    "RerankRequest",
    "RerankResponse",
)


def _message_classes() -> Tuple[Any, ...]:
    data = resources.files(__package__).joinpath("_proto/embedrt_v1.binpb").read_bytes()
    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_pb2.FileDescriptorSet.FromString(data).file:
        pool.Add(file)
    return tuple(
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"embedrt.v1.{name}"))
        for name in MESSAGES
    )


(
    EmbedRequest,
    EmbedResponse,
    ListModelsRequest,
    ListModelsResponse,
    RerankRequest,
    RerankResponse,
) = _message_classes()


class GrpcTransport:
    """Blocking calls over one grpcio channel (HTTP/2, shared by threads)."""

    def __init__(self, target: str, api_key: Optional[str], timeout: float) -> None:
        self._channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        self._calls = _Calls(self._channel, api_key, timeout)

    def embed(self, texts: Sequence[str], options: EmbedOptions) -> List[array[float]]:
        """Sends one ``Embed``; returns its vectors in order (errors as `HttpTransport.embed`)."""
        with _rpc_errors():
            response = self._calls.embed(_embed_request(texts, options), **self._calls.settings)
        return _vectors(response)

    def rerank(
        self, query: str, documents: Sequence[str], options: RerankOptions
    ) -> List[RerankResult]:
        """Sends one ``Rerank``; returns its results (errors as `HttpTransport.embed`)."""
        with _rpc_errors():
            response = self._calls.rerank(
                _rerank_request(query, documents, options), **self._calls.settings
            )
        return _rerank_results(response)

    def models(self) -> List[Model]:
        """Lists the served models (``ListModels``)."""
        with _rpc_errors():
            response = self._calls.list_models(ListModelsRequest(), **self._calls.settings)
        return [Model.from_proto(m) for m in response.models]

    def close(self) -> None:
        """Closes the channel."""
        self._channel.close()


class AsyncGrpcTransport:
    """asyncio calls over one ``grpc.aio`` channel, opened on first use in the running loop."""

    def __init__(self, target: str, api_key: Optional[str], timeout: float) -> None:
        self._target, self._api_key, self._timeout = target, api_key, timeout
        self._channel: Optional[grpc.aio.Channel] = None
        self._calls: Optional[_Calls] = None

    def _open(self) -> "_Calls":
        if self._calls is None:
            self._channel = grpc.aio.insecure_channel(self._target, options=CHANNEL_OPTIONS)
            self._calls = _Calls(self._channel, self._api_key, self._timeout)
        return self._calls

    async def embed(self, texts: Sequence[str], options: EmbedOptions) -> List[array[float]]:
        """Sends one ``Embed``; returns its vectors in order (errors as `HttpTransport.embed`)."""
        calls = self._open()
        with _rpc_errors():
            response = await calls.embed(_embed_request(texts, options), **calls.settings)
        return _vectors(response)

    async def rerank(
        self, query: str, documents: Sequence[str], options: RerankOptions
    ) -> List[RerankResult]:
        """Sends one ``Rerank``; returns its results (errors as `HttpTransport.embed`)."""
        calls = self._open()
        with _rpc_errors():
            response = await calls.rerank(
                _rerank_request(query, documents, options), **calls.settings
            )
        return _rerank_results(response)

    async def models(self) -> List[Model]:
        """Lists the served models (``ListModels``)."""
        calls = self._open()
        with _rpc_errors():
            response = await calls.list_models(ListModelsRequest(), **calls.settings)
        return [Model.from_proto(m) for m in response.models]

    async def close(self) -> None:
        """Closes the channel."""
        if self._channel is not None:
            await self._channel.close()


class _Calls:
    """The methods' callables on one channel (sync or aio), and their call settings."""

    def __init__(self, channel: Any, api_key: Optional[str], timeout: float) -> None:
        self.embed = channel.unary_unary(
            SERVICE + "Embed",
            request_serializer=EmbedRequest.SerializeToString,
            response_deserializer=EmbedResponse.FromString,
        )
        self.rerank = channel.unary_unary(
            SERVICE + "Rerank",
            request_serializer=RerankRequest.SerializeToString,
            response_deserializer=RerankResponse.FromString,
        )
        self.list_models = channel.unary_unary(
            SERVICE + "ListModels",
            request_serializer=ListModelsRequest.SerializeToString,
            response_deserializer=ListModelsResponse.FromString,
        )
        metadata = (("authorization", f"Bearer {api_key}"),) if api_key else None
        self.settings = {"timeout": timeout, "metadata": metadata}


def _embed_request(texts: Sequence[str], options: EmbedOptions) -> Any:
    request = EmbedRequest(
        model=options.model or "", texts=list(texts), late_chunking=options.late_chunking
    )
    if options.task is not None:
        request.task = options.task
    if options.dimensions is not None:
        request.dimensions = options.dimensions
    if not options.normalized:
        request.normalize = False
    return request


def _rerank_request(query: str, documents: Sequence[str], options: RerankOptions) -> Any:
    request = RerankRequest(
        model=options.model or "",
        query=query,
        documents=list(documents),
        raw_scores=options.raw_scores,
    )
    if options.max_tokens_per_doc is not None:
        request.max_tokens_per_doc = options.max_tokens_per_doc
    if options.truncate is not None:
        request.truncate = options.truncate
    return request


def _rerank_results(response: Any) -> List[RerankResult]:
    return [
        RerankResult(index=result.index, relevance_score=result.relevance_score)
        for result in response.results
    ]


def _vectors(response: Any) -> List[array[float]]:
    return [array("f", embedding.values) for embedding in response.embeddings]


@contextmanager
def _rpc_errors() -> Iterator[None]:
    """Turns a failed call's `grpc.RpcError` into `APIError`."""
    try:
        yield
    except grpc.RpcError as error:
        raise _api_error(error) from None


def _api_error(error: Any) -> APIError:
    code = error.code()
    message = error.details() or code.name
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return APIConnectionError(message, code=code.name)
    status = HTTP_STATUS.get(code, 500)
    # The server's refusals when its queue is full carry no delay; HTTP's Retry-After is 1 s.
    retry_after = 1.0 if status == 429 else None
    return APIError(message, status=status, code=code.name, retry_after=retry_after)
