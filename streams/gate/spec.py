"""One typed function spec, whatever manifest it was read from.

Every reader (``streams.gate.manifests``) turns a resource into a
:class:`FunctionSpec`; the diff, the predictions and the policy input read only
this. Environment variables are kept by name: values never leave the manifest.

Governor's own attributes ride on a resource's tags, labels or annotations, under
the names in :data:`ATTRIBUTES` with a ``governor.``, ``governor.io/`` or
``governor-`` prefix (words joined by ``-`` or ``_``; a plain ``team`` tag counts
too): ``team``, ``egress`` (comma-separated hosts), ``datasets``, ``model-serving``,
``model-card``, ``fairness-report``, ``explanation``, ``data-provenance``,
``fairness-disparity``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ATTRIBUTES = ("team", "egress", "datasets", "model_serving", "model_card", "fairness_report",
              "explanation", "data_provenance", "fairness_disparity")
"""The Governor attributes a manifest may carry in its tags, labels or annotations."""

COMPARED = ("provider", "runtime", "architecture", "memory_mb", "timeout_s", "concurrency",
            "image", "handler", "env_keys", "network", "egress", "datasets", "team", "labels",
            "model_serving", "model_card", "fairness_report", "explanation", "data_provenance",
            "fairness_disparity")
"""The fields a change is reported on, in this order."""


@dataclass(frozen=True, slots=True)
class Source:
    """Where a resource is defined: the file and the 1-based line of its definition."""

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionSpec:
    """A serverless function as a deployment manifest defines it.

    ``None`` means the manifest does not say (the provider's default applies).
    """

    name: str
    provider: str
    """``aws``, ``gcp``, ``azure``, ``knative`` or ``kubernetes``."""
    kind: str
    """The resource type it was read from, e.g. ``AWS::Serverless::Function``."""
    source: Source
    runtime: str = ""
    architecture: str = "x86_64"
    memory_mb: int | None = None
    timeout_s: float | None = None
    concurrency: int | None = None
    image: str = ""
    handler: str = ""
    env_keys: tuple[str, ...] = ()
    network: str = ""
    """``vpc`` when the function is placed in a private network, else empty."""
    egress: tuple[str, ...] = ()
    """Destinations the manifest declares the function contacts."""
    datasets: tuple[str, ...] = ()
    team: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    model_serving: bool = False
    model_card: str | None = None
    fairness_report: str | None = None
    explanation: str | None = None
    data_provenance: str | None = None
    fairness_disparity: float | None = None

    @property
    def price_key(self) -> str | None:
        """Its entry in the price catalogue, or None (container platforms have none)."""
        if self.provider == "aws":
            return "aws-arm64" if self.architecture == "arm64" else "aws"
        return self.provider if self.provider in ("gcp", "azure") else None

    def value(self, name: str) -> Any:
        """A compared field as plain data (tuples as lists, mappings as dicts)."""
        v = getattr(self, name)
        if isinstance(v, tuple):
            return list(v)
        return dict(v) if isinstance(v, Mapping) else v

    def policy_function(self) -> dict[str, Any]:
        """The ``function`` part of the policy input."""
        return {"name": self.name, "team": self.team, "version": "", "memory_mb": self.memory_mb,
                "timeout_s": self.timeout_s, "concurrency": self.concurrency,
                "labels": dict(self.labels), "model_serving": self.model_serving,
                "attributes": {}, "provider": self.provider, "kind": self.kind,
                "runtime": self.runtime, "architecture": self.architecture,
                "image": self.image, "handler": self.handler, "env_keys": list(self.env_keys),
                "network": self.network}


@dataclass(frozen=True, slots=True)
class Skipped:
    """A resource or document the gate did not read, and why."""

    source: Source
    what: str
    why: str


@dataclass(frozen=True, slots=True)
class Manifest:
    """What one file holds: its functions and what was skipped."""

    path: str
    format: str
    functions: tuple[FunctionSpec, ...]
    skipped: tuple[Skipped, ...] = ()


def _key(raw: str) -> str | None:
    """The attribute a tag/label key names (``governor.model-card`` → model_card)."""
    for prefix in ("governor.io/", "governor.", "governor/", "governor-", "governor_"):
        if raw.startswith(prefix):
            name = raw.removeprefix(prefix).replace("-", "_").replace(".", "_")
            return name if name in ATTRIBUTES else None
    return "team" if raw == "team" else None


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("true", "1", "yes", "on")


def _names(value: str) -> tuple[str, ...]:
    return tuple(sorted({n.strip() for n in value.split(",") if n.strip()}))


def attributes(tags: Mapping[str, str], source: Source) -> dict[str, Any]:
    """The spec fields that Governor attributes among ``tags`` set, the rest as labels.

    Raises :class:`~streams.errors.ManifestError` for a fairness disparity that is not
    a number.
    """
    from streams.errors import ManifestError

    found: dict[str, Any] = {}
    labels: dict[str, str] = {}
    for raw, value in tags.items():
        name = _key(raw)
        if name is None:
            labels[raw] = value
        elif name in ("egress", "datasets"):
            found[name] = _names(value)
        elif name == "model_serving":
            found[name] = _truthy(value)
        elif name == "fairness_disparity":
            try:
                found[name] = float(value)
            except ValueError:
                raise ManifestError(f"{source}: expected a number for {raw}, "
                                    f"got {value!r}") from None
        else:
            found[name] = value.strip()
    found["labels"] = labels
    return found

