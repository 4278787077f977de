"""What the LangChain and LlamaIndex integrations share: their clients, and the choice of the
task to send (the configured one when the model has it)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ._async_client import AsyncClient
from ._client import Client
from ._models import Model, find_model

DOCUMENT_TASK = "retrieval.passage"
QUERY_TASK = "retrieval.query"


def served_task(models: List[Model], model: Optional[str], task: Optional[str]) -> Optional[str]:
    """Returns ``task`` when the model that ``model`` names (or the only one served, for
    ``None``) lists it among its tasks, else ``None``: models without tasks get none."""
    chosen = find_model(models, model)
    return task if task is not None and chosen is not None and task in chosen.tasks else None


class IntegrationClients:
    """A `Client`, an `AsyncClient` made on first asynchronous use, and the served models,
    listed once."""

    def __init__(self, model: Optional[str], client_arguments: Dict[str, Any]) -> None:
        self.model = model
        self._arguments = client_arguments
        self.blocking = Client(**client_arguments)
        self._asynchronous: Optional[AsyncClient] = None
        self._served: Optional[List[Model]] = None

    @property
    def asynchronous(self) -> AsyncClient:
        """The asyncio client (bound to the event loop that first uses it)."""
        if self._asynchronous is None:
            self._asynchronous = AsyncClient(**self._arguments)
        return self._asynchronous

    def task(self, task: Optional[str]) -> Optional[str]:
        """``task`` if the model has it, else ``None`` (lists the models on first use)."""
        if self._served is None:
            self._served = self.blocking.models()
        return served_task(self._served, self.model, task)

    async def atask(self, task: Optional[str]) -> Optional[str]:
        """`task`, listing the models without blocking the event loop."""
        if self._served is None:
            self._served = await self.asynchronous.models()
        return served_task(self._served, self.model, task)
