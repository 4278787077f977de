"""The exceptions the client raises."""

from __future__ import annotations

from typing import Any, Optional

__all__ = ["APIError", "APIConnectionError"]

# Statuses worth sending again: the model's queue is full (429), or the server is loading,
# draining or has an unhealthy backend (503).
RETRYABLE_STATUSES = frozenset({429, 503})


class APIError(Exception):
    """The server refused a request, or could not be reached.

    Attributes:
        message: the server's explanation (`error.message` of its OpenAI-style body).
        status: the HTTP status (a gRPC status is mapped to its HTTP counterpart); ``None``
            when no answer came.
        code: the server's machine-readable reason, e.g. ``"model_not_found"``,
            ``"queue_full"``, ``"invalid_value"`` (for gRPC: the status code's name).
        param: the request field at fault, e.g. ``"dimensions"``, when the server names one.
        type: the OpenAI error type, e.g. ``"invalid_request_error"``.
        retry_after: seconds the server asked to wait before trying again (``Retry-After``).
    """

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        code: Optional[str] = None,
        param: Optional[str] = None,
        type: Optional[str] = None,
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.param = param
        self.type = type
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """Whether sending the same request again may succeed."""
        return self.status in RETRYABLE_STATUSES

    def __str__(self) -> str:
        details = ", ".join(
            f"{name}={value!r}"
            for name, value in (("status", self.status), ("code", self.code), ("param", self.param))
            if value is not None
        )
        return f"{self.message} ({details})" if details else self.message

    @classmethod
    def from_body(cls, status: int, body: Any, retry_after: Optional[float] = None) -> "APIError":
        """Builds the error of an HTTP answer from its decoded JSON body (any shape)."""
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return cls(f"HTTP {status}: {body!r}", status=status, retry_after=retry_after)
        return cls(
            str(error.get("message") or f"HTTP {status}"),
            status=status,
            code=error.get("code"),
            param=error.get("param"),
            type=error.get("type"),
            retry_after=retry_after,
        )


class APIConnectionError(APIError):
    """No answer came: the connection was refused or broken, or the request timed out.

    Always retryable: embedding requests have no side effects, so sending one again is safe.
    """

    @property
    def retryable(self) -> bool:
        return True
