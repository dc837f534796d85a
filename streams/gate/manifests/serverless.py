"""Serverless Framework ``serverless.yml``: each entry of ``functions``, with the
``provider`` section's settings as defaults. A function is named by its ``name``
when that is plain text, else by its key."""

from __future__ import annotations

from typing import Any

from streams.errors import ManifestError
from streams.gate.manifests.fields import Fields
from streams.gate.spec import FunctionSpec, Manifest, attributes

PROVIDERS = {"aws": "aws", "google": "gcp", "azure": "azure"}


def is_serverless(document: Any) -> bool:
    """Whether ``document`` looks like a Serverless Framework service."""
    return isinstance(document, dict) and "service" in document and "provider" in document


def read(path: str, document: Any) -> Manifest:
    """The functions of a service."""
    top = Fields(path, document)
    provider = top.child("provider")
    cloud = provider.text("name") or "aws"
    if cloud not in PROVIDERS:
        raise ManifestError(f"{provider.here('name')}: expected provider name aws, google or "
                            f"azure, got {cloud!r}")
    functions = top.child("functions")
    specs = []
    for key in functions.node:
        f = functions.child(key)
        source = functions.here(key)
        name = f.text("name")
        tags = {**provider.tags("tags"), **f.tags("tags")}
        env = tuple(sorted({*provider.names("environment"), *f.names("environment")}))
        vpc = f.child("vpc").node or provider.child("vpc").node
        image = f.text("image") or ""
        specs.append(FunctionSpec(
            name=name if name and "${" not in name else key, provider=PROVIDERS[cloud],
            kind="serverless.function", source=source,
            runtime=f.text("runtime") or provider.text("runtime") or ("image" if image else ""),
            architecture=f.text("architecture") or provider.text("architecture") or "x86_64",
            memory_mb=_first(f.memory_mb("memorySize"), provider.memory_mb("memorySize")),
            timeout_s=_first(f.number("timeout"), provider.number("timeout")),
            concurrency=f.integer("reservedConcurrency"), image=image,
            handler=f.text("handler") or "", env_keys=env, network="vpc" if vpc else "",
            **attributes(tags, source)))
    return Manifest(path, "serverless", tuple(specs))


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)
