"""Merging concurrent small `AsyncClient.embed` calls into shared requests."""

from __future__ import annotations

import asyncio
from array import array
from typing import Any, Awaitable, Callable, Dict, List, Optional, Set, Tuple

from ._errors import APIError
from ._request import EmbedOptions, estimated_tokens

Send = Callable[[List[str], EmbedOptions], Awaitable[List["array[float]"]]]


class _Batch:
    """Texts of several callers waiting to go out as one request."""

    def __init__(self) -> None:
        self.texts: List[str] = []
        self.tokens = 0
        # Each caller's first text, count and future.
        self.callers: List[Tuple[int, int, "asyncio.Future[List[array[float]]]"]] = []
        self.timer: Optional[asyncio.TimerHandle] = None


class Coalescer:
    """Collects the texts of calls with equal options for up to ``window`` seconds (or until
    a call's ``max_texts`` or ``max_tokens`` are reached) and sends them as one request through
    ``send``, handing each caller exactly its own vectors.

    A shared request refused for its content (a 4xx other than 429) is sent again caller by
    caller, so that one caller's bad input fails that caller alone.
    """

    def __init__(self, send: Send, window: float, max_tokens: int) -> None:
        self._send = send
        self._window = window
        self._max_tokens = max_tokens
        self._open: Dict[EmbedOptions, _Batch] = {}
        self._in_flight: Set["asyncio.Task[None]"] = set()

    async def embed(
        self, texts: List[str], options: EmbedOptions, max_texts: int
    ) -> List[array[float]]:
        """Embeds ``texts`` within a shared request of at most ``max_texts`` texts; returns
        their vectors in order."""
        loop = asyncio.get_running_loop()
        tokens = sum(estimated_tokens(text) for text in texts)
        batch = self._open.get(options)
        if batch is not None and (
            len(batch.texts) + len(texts) > max_texts or batch.tokens + tokens > self._max_tokens
        ):
            self._flush(options, batch)
            batch = None
        if batch is None:
            batch = _Batch()
            batch.timer = loop.call_later(self._window, self._flush, options, batch)
            self._open[options] = batch
        future: "asyncio.Future[List[array[float]]]" = loop.create_future()
        batch.callers.append((len(batch.texts), len(texts), future))
        batch.texts.extend(texts)
        batch.tokens += tokens
        if len(batch.texts) >= max_texts:
            self._flush(options, batch)
        return await future

    def _flush(self, options: EmbedOptions, batch: _Batch) -> None:
        if self._open.get(options) is not batch:
            return  # already sent
        del self._open[options]
        if batch.timer is not None:
            batch.timer.cancel()
        task = asyncio.ensure_future(self._deliver(options, batch))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _deliver(self, options: EmbedOptions, batch: _Batch) -> None:
        try:
            vectors = await self._send(batch.texts, options)
        except APIError as error:
            if len(batch.callers) > 1 and not error.retryable and error.status is not None:
                await asyncio.gather(
                    *(self._deliver_alone(options, batch, caller) for caller in batch.callers)
                )
            else:
                for _, _, future in batch.callers:
                    _settle(future, error=error)
        except BaseException as error:  # cancelled, or a bug: no caller may wait forever
            for _, _, future in batch.callers:
                _settle(future, error=error)
            raise
        else:
            for start, count, future in batch.callers:
                _settle(future, result=vectors[start : start + count])

    async def _deliver_alone(
        self,
        options: EmbedOptions,
        batch: _Batch,
        caller: Tuple[int, int, "asyncio.Future[List[array[float]]]"],
    ) -> None:
        start, count, future = caller
        try:
            _settle(future, result=await self._send(batch.texts[start : start + count], options))
        except APIError as error:
            _settle(future, error=error)


def _settle(
    future: "asyncio.Future[List[array[float]]]",
    result: Any = None,
    error: Optional[BaseException] = None,
) -> None:
    """Completes a caller's future unless the caller has gone (cancelled)."""
    if future.done():
        return
    if isinstance(error, asyncio.CancelledError):
        future.cancel()
    elif error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
