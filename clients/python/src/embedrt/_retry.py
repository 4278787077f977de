"""When to send a refused request again, and how long to wait first."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Optional

from ._errors import APIError


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, honouring the server's ``Retry-After``.

    Attributes:
        max_retries: how many times one request is sent again before its error is raised.
        backoff: the first wait, in seconds; each further retry doubles it, up to ``max_backoff``.
        max_backoff: the longest wait between two tries, in seconds (``Retry-After`` aside).
    """

    max_retries: int = 8
    backoff: float = 0.1
    max_backoff: float = 5.0

    def delay(self, retries_so_far: int, error: APIError) -> Optional[float]:
        """Returns the seconds to wait before retrying after ``error``, or ``None`` to give up.

        The wait is half the backoff plus a random share of the other half, so that clients
        refused together do not all come back together; a ``Retry-After`` is added to it.
        """
        if not error.retryable or retries_so_far >= self.max_retries:
            return None
        ceiling = min(self.max_backoff, self.backoff * 2.0**retries_so_far)
        wait = ceiling / 2 + random.uniform(0, ceiling / 2)
        if error.retry_after is not None:
            wait += error.retry_after
        return wait
