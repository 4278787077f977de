"""A client for the embedrt embedding server that batches for you.

`Client` (blocking) and `AsyncClient` (asyncio) take any number of texts, cut them into
requests by the server's limits, send those side by side and put the vectors back in order
(`Client.embed`), or rank documents against a query with a reranker (`Client.rerank`);
`AsyncClient` also merges many small concurrent calls into shared requests. Requests refused
because the server is busy (429, 503) or lost to connection errors are sent again with
exponential backoff and jitter; other refusals raise `APIError` with the server's reason.

Optional extras: ``numpy`` (`Client.embed_numpy`), ``grpc`` (``transport="grpc"``),
``langchain`` (`embedrt.langchain.EmbedrtEmbeddings`, `embedrt.langchain.EmbedrtRerank`) and
``llama-index`` (`embedrt.llama_index.EmbedrtEmbedding`, `embedrt.llama_index.EmbedrtRerank`).
"""

from ._async_client import AsyncClient
from ._client import Client
from ._errors import APIConnectionError, APIError
from ._models import Model, RerankResult, Variant

__all__ = [
    "APIConnectionError",
    "APIError",
    "AsyncClient",
    "Client",
    "Model",
    "RerankResult",
    "Variant",
]
__version__ = "0.1.0"
