"""What one embedding or rerank call asks for, and how its texts are cut into requests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

# Used when the server's limits are unknown (it did not list the model): the server's own default.
DEFAULT_MAX_INPUTS = 2048


@dataclass(frozen=True)
class EmbedOptions:
    """The fields of an embedding request other than its texts.

    Calls with equal options may share a request (coalescing), so the class is hashable.
    """

    model: Optional[str] = None
    task: Optional[str] = None
    dimensions: Optional[int] = None
    normalized: bool = True
    late_chunking: bool = False

    def http_body(self, texts: Sequence[str]) -> Dict[str, Any]:
        """The JSON body of ``POST /v1/embeddings`` (vectors asked as base64 float32)."""
        body: Dict[str, Any] = {"input": list(texts), "encoding_format": "base64"}
        if self.model is not None:
            body["model"] = self.model
        if self.task is not None:
            body["task"] = self.task
        if self.dimensions is not None:
            body["dimensions"] = self.dimensions
        if not self.normalized:
            body["normalized"] = False
        if self.late_chunking:
            body["late_chunking"] = True
        return body


@dataclass(frozen=True)
class RerankOptions:
    """The fields of a rerank request other than its query and documents."""

    model: Optional[str] = None
    max_tokens_per_doc: Optional[int] = None
    truncate: Optional[bool] = None
    raw_scores: bool = False

    def http_body(self, query: str, documents: Sequence[str]) -> Dict[str, Any]:
        """The JSON body of ``POST /v1/rerank`` (Cohere's shape; every result comes back, the
        client picks the best)."""
        body: Dict[str, Any] = {"query": query, "documents": list(documents)}
        if self.model is not None:
            body["model"] = self.model
        if self.max_tokens_per_doc is not None:
            body["max_tokens_per_doc"] = self.max_tokens_per_doc
        if self.truncate is not None:
            body["truncate"] = self.truncate
        if self.raw_scores:
            body["raw_scores"] = True
        return body


# The most UTF-8 bytes of text per request: half the server's default body limit
# (`max_body_bytes`, 4 MiB), leaving room for JSON escaping.
MAX_REQUEST_BYTES = 2 << 20


def estimated_tokens(text: str) -> int:
    """A cheap upper-leaning guess of a text's token count (about 4 UTF-8 bytes per token,
    plus the special tokens), used to keep requests similar in work without a tokenizer."""
    return _tokens_of_size(len(text.encode("utf-8")))


def _tokens_of_size(size: int) -> int:
    return size // 4 + 2


def split(
    texts: Sequence[str], max_inputs: int, max_tokens: int, longest: Optional[int] = None
) -> List[Tuple[int, int]]:
    """Cuts ``texts`` into consecutive ``(start, end)`` ranges of at most ``max_inputs`` texts
    and, unless one text alone exceeds them, at most ``max_tokens`` estimated tokens and
    `MAX_REQUEST_BYTES` bytes each.

    ``longest`` is the model's input limit, when known: the server cuts longer texts to it, so
    no text costs more tokens (its bytes still travel)."""
    ranges: List[Tuple[int, int]] = []
    start, tokens, size = 0, 0, 0
    for index, text in enumerate(texts):
        text_size = len(text.encode("utf-8"))
        cost = _tokens_of_size(text_size)
        if longest:
            cost = min(cost, longest)
        if index > start and (
            index - start >= max_inputs
            or tokens + cost > max_tokens
            or size + text_size > MAX_REQUEST_BYTES
        ):
            ranges.append((start, index))
            start, tokens, size = index, 0, 0
        tokens += cost
        size += text_size
    if start < len(texts):
        ranges.append((start, len(texts)))
    return ranges
