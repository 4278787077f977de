"""What `Client` and `AsyncClient` share: settings, argument checks, request planning and the
shaping of results. Everything here is free of I/O; the two clients add the calls."""

from __future__ import annotations

from array import array
from typing import Any, List, Optional, Sequence, Tuple, Union

from ._models import Model, RerankResult, find_model
from ._request import DEFAULT_MAX_INPUTS, EmbedOptions, split
from ._retry import RetryPolicy

Texts = Union[str, Sequence[str]]


class ClientBase:
    """The settings and I/O-free helpers of both clients."""

    def __init__(
        self,
        base_url: str,
        api_key: Optional[str],
        timeout: float,
        max_concurrency: int,
        transport: str,
        grpc_target: Optional[str],
        batch_size: int,
        batch_tokens: int,
        max_retries: int,
    ) -> None:
        if transport not in ("http", "grpc"):
            raise ValueError(f"transport must be 'http' or 'grpc', not {transport!r}")
        if transport == "grpc" and not grpc_target:
            raise ValueError("transport='grpc' needs grpc_target, e.g. '127.0.0.1:50051'")
        for name, value in (
            ("max_concurrency", max_concurrency),
            ("batch_size", batch_size),
            ("batch_tokens", batch_tokens),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be at least 0, not {max_retries}")
        self.base_url = base_url
        self.api_key = api_key
        self.timeout = timeout
        self.max_concurrency = max_concurrency
        self.transport_name = transport
        self.grpc_target = grpc_target
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
        self.retry = RetryPolicy(max_retries=max_retries)
        self._models: Optional[List[Model]] = None

    def _model_named(self, name: Optional[str]) -> Optional[Model]:
        """The listed model that ``name`` designates (the only one when ``name`` is None)."""
        return find_model(self._models or [], name)

    def _request_size(self, model_name: Optional[str]) -> int:
        """The most texts one request to the model ``model_name`` carries: ``batch_size``, or
        the model's ``max_inputs`` when smaller."""
        model = self._model_named(model_name)
        max_inputs = model.max_inputs if model and model.max_inputs else DEFAULT_MAX_INPUTS
        return min(self.batch_size, max_inputs)

    def _ranges(self, texts: Sequence[str], options: EmbedOptions) -> List[Tuple[int, int]]:
        """How the texts of one call are cut into requests."""
        if options.late_chunking:
            # The texts are chunks of one document, encoded together: one request.
            return [(0, len(texts))]
        return self._text_ranges(texts, options.model)

    def _text_ranges(self, texts: Sequence[str], model_name: Optional[str]) -> List[Tuple[int, int]]:
        """How texts (inputs, or a rerank call's documents) are cut into requests to the model
        ``model_name``: by its ``max_inputs``, ``batch_size`` and ``batch_tokens``."""
        model = self._model_named(model_name)
        longest = model.max_tokens if model else None
        return split(texts, self._request_size(model_name), self.batch_tokens, longest)


def text_list(texts: Texts) -> Tuple[List[str], bool]:
    """The texts as a list, and whether a bare string (one vector, not a list) was given.

    Raises:
        TypeError: ``texts`` is neither a string nor a sequence of strings.
    """
    if isinstance(texts, str):
        return [texts], True
    if isinstance(texts, (bytes, bytearray)):
        raise TypeError("texts must be str or a sequence of str, not bytes")
    listed = list(texts)
    for text in listed:
        if not isinstance(text, str):
            raise TypeError(f"every text must be a str, not {type(text).__name__}")
    return listed, False


def document_list(documents: Sequence[str]) -> List[str]:
    """A rerank call's documents as a list.

    Raises:
        TypeError: ``documents`` is a bare string, or holds something that is no string.
    """
    if isinstance(documents, str):
        raise TypeError("documents must be a sequence of str, not one str")
    listed, _ = text_list(documents)
    return listed


def check_top_n(top_n: Optional[int]) -> None:
    """Raises ValueError for a ``top_n`` below 1."""
    if top_n is not None and top_n < 1:
        raise ValueError(f"top_n must be at least 1, not {top_n}")


def ranked(
    parts: Sequence[Tuple[int, List[RerankResult]]],
    documents: Sequence[str],
    top_n: Optional[int],
    return_documents: bool,
) -> List[RerankResult]:
    """Joins the answers of a rerank call's requests (each with the index of its first
    document): best first (ties in document order), the best ``top_n``, with their texts when
    ``return_documents``."""
    results = [
        RerankResult(
            index=start + result.index,
            relevance_score=result.relevance_score,
            document=documents[start + result.index] if return_documents else None,
        )
        for start, part in parts
        for result in part
    ]
    results.sort(key=lambda result: (-result.relevance_score, result.index))
    return results[:top_n] if top_n is not None else results


def as_lists(vectors: List[array[float]], single: bool) -> Any:
    """The vectors as Python lists (one list for a bare-string call)."""
    lists = [vector.tolist() for vector in vectors]
    return lists[0] if single else lists


def as_numpy(vectors: List[array[float]]) -> Any:
    """The vectors as one ``(n, d)`` float32 array.

    Raises:
        ImportError: numpy is not installed.
    """
    try:
        import numpy
    except ImportError as missing:
        raise ImportError("embed_numpy needs numpy: pip install 'embedrt[numpy]'") from missing
    if not vectors:
        return numpy.zeros((0, 0), dtype=numpy.float32)
    joined: array[float] = array("f")
    for vector in vectors:
        joined.extend(vector)
    return numpy.frombuffer(joined, dtype=numpy.float32).reshape(len(vectors), -1).copy()
