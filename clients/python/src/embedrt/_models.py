"""What the server reports about the models it serves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Mapping, Optional, Sequence, Tuple

__all__ = ["Model", "RerankResult", "Variant", "find_model"]


@dataclass(frozen=True)
class Variant:
    """One engine serving a model (a model may have several, for A/B tests or shadows)."""

    name: str
    backend: str
    device: str = "cpu"
    dtype: str = ""
    weight: int = 1
    shadow: bool = False
    replicas: int = 1


@dataclass(frozen=True)
class Model:
    """A served model, as ``GET /v1/models`` (or gRPC ``ListModels``) describes it.

    Attributes:
        id: the name to pass as ``model``.
        aliases: other names the server accepts for it.
        alias_tasks: the aliases that carry a task, each with its task (requests through such a
            name that name no task run it).
        backend: the engine of its primary variant.
        tasks: the tasks it accepts (jina-embeddings-v3's adapters); empty when it has none.
        dimensions: the size of its vectors.
        matryoshka_dimensions: the sizes ``dimensions`` may take; empty means any size.
        max_tokens: the most tokens one input may have.
        max_inputs: the most inputs one request may carry.
        variants: the engines serving it.
        kind: ``"embedding"`` (`Client.embed`) or ``"rerank"`` (a cross-encoder:
            `Client.rerank`).
    """

    id: str
    aliases: Tuple[str, ...] = ()
    alias_tasks: Mapping[str, str] = field(default_factory=dict, hash=False)
    backend: str = ""
    tasks: Tuple[str, ...] = ()
    dimensions: int = 0
    matryoshka_dimensions: Tuple[int, ...] = ()
    max_tokens: int = 0
    max_inputs: int = 0
    variants: Tuple[Variant, ...] = field(default=())
    kind: str = "embedding"

    @property
    def names(self) -> List[str]:
        """Every name that designates this model."""
        return [self.id, *self.aliases]

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> "Model":
        """Reads one entry of ``GET /v1/models``' ``data``."""
        return cls(
            id=entry["id"],
            aliases=tuple(entry.get("aliases", ())),
            alias_tasks=dict(entry.get("alias_tasks", {})),
            backend=entry.get("backend", ""),
            tasks=tuple(entry.get("tasks", ())),
            dimensions=int(entry.get("dimensions", 0)),
            matryoshka_dimensions=tuple(entry.get("matryoshka_dimensions", ())),
            max_tokens=int(entry.get("max_tokens", 0)),
            max_inputs=int(entry.get("max_inputs", 0)),
            kind=entry.get("kind", "embedding"),
            variants=tuple(
                Variant(
                    name=v["name"],
                    backend=v.get("backend", ""),
                    device=v.get("device", "cpu"),
                    dtype=v.get("dtype", ""),
                    weight=int(v.get("weight", 1)),
                    shadow=bool(v.get("shadow", False)),
                    replicas=int(v.get("replicas", 1)),
                )
                for v in entry.get("variants", ())
            ),
        )

    @classmethod
    def from_proto(cls, message: Any) -> "Model":
        """Reads one ``embedrt.v1.Model`` of a ``ListModels`` answer."""
        return cls(
            id=message.name,
            aliases=tuple(message.aliases),
            alias_tasks=dict(message.alias_tasks),
            backend=message.backend,
            tasks=tuple(message.tasks),
            dimensions=message.dimensions,
            matryoshka_dimensions=tuple(message.matryoshka_dimensions),
            max_tokens=message.max_tokens,
            max_inputs=message.max_inputs,
            kind=message.kind or "embedding",
            variants=tuple(
                Variant(
                    name=v.name,
                    backend=v.backend,
                    device=v.device,
                    dtype=v.dtype,
                    weight=v.weight,
                    shadow=v.shadow,
                    replicas=v.replicas,
                )
                for v in message.variants
            ),
        )


@dataclass(frozen=True)
class RerankResult:
    """One document's place in a rerank answer, best first.

    Attributes:
        index: the document's position in the list given to `Client.rerank`.
        relevance_score: its score (the model's logit when ``raw_scores`` was asked).
        document: its text, when ``return_documents`` was asked.
    """

    index: int
    relevance_score: float
    document: Optional[str] = None


def find_model(models: Sequence[Model], name: Optional[str]) -> Optional[Model]:
    """The model of ``models`` that ``name`` designates (by id or alias), or, for ``None``, the
    only one when exactly one is served (the server's own rule for a request without a model)."""
    if name is None:
        return models[0] if len(models) == 1 else None
    return next((m for m in models if name in m.names), None)
