"""Kubernetes manifests: a ``Deployment`` labelled
``app.kubernetes.io/component: serverless-function`` and a Knative ``Service``
(``serving.knative.dev``); other documents are listed as skipped. Governor
attributes come from labels and annotations (``governor.io/team`` …). Memory is the
first container's limit; concurrency is a Deployment's ``replicas``, or a Knative
revision's ``containerConcurrency`` × its ``max-scale`` (calls in flight at most)."""

from __future__ import annotations

from typing import Any

from streams.errors import ManifestError
from streams.gate.manifests.fields import Fields
from streams.gate.spec import FunctionSpec, Manifest, Skipped, attributes

COMPONENT = "app.kubernetes.io/component"
MAX_SCALE = "autoscaling.knative.dev/max-scale"


def is_kubernetes(documents: list[Any]) -> bool:
    """Whether every document looks like a Kubernetes object."""
    return bool(documents) and all(isinstance(d, dict) and "apiVersion" in d and "kind" in d
                                   for d in documents)


def read(path: str, documents: list[Any]) -> Manifest:
    """The serverless functions among the documents of one file."""
    functions, skipped = [], []
    for document in documents:
        top = Fields(path, document)
        kind, api = top.text("kind") or "", top.text("apiVersion") or ""
        meta = top.child("metadata")
        name = meta.text("name") or ""
        if kind == "Service" and api.startswith("serving.knative.dev/"):
            functions.append(_function(top, meta, "knative", f"{api}/{kind}"))
        elif kind == "Deployment" and meta.child("labels").text(COMPONENT) == \
                "serverless-function":
            functions.append(_function(top, meta, "kubernetes", f"{api}/{kind}"))
        else:
            why = ("a Deployment not labelled " + COMPONENT + ": serverless-function"
                   if kind == "Deployment" else "not a function")
            skipped.append(Skipped(top.here(), f"{name} ({kind})", why))
    return Manifest(path, "kubernetes", tuple(functions), tuple(skipped))


def _function(top: Fields, meta: Fields, provider: str, kind: str) -> FunctionSpec:
    template = top.child("spec").child("template")
    pod = template.child("spec")
    containers = pod.items("containers")
    if not containers or not isinstance(containers[0], dict):
        raise ManifestError(f"{pod.here('containers')}: expected a list of containers with "
                            "at least one container")
    container = Fields(top.path, containers[0], pod.here("containers").line)
    tmeta = template.child("metadata")
    tags = {**meta.tags("labels"), **meta.tags("annotations"), **tmeta.tags("labels"),
            **tmeta.tags("annotations")}
    env = tuple(sorted(str(e.get("name")) for e in container.items("env")
                       if isinstance(e, dict) and e.get("name")))
    concurrency = None
    if provider == "knative":
        per_pod = pod.integer("containerConcurrency")
        scale = tmeta.child("annotations").integer(MAX_SCALE)
        concurrency = per_pod * scale if per_pod and scale else None
    else:
        concurrency = top.child("spec").integer("replicas")
    limits = container.child("resources").child("limits")
    return FunctionSpec(
        name=meta.text("name") or "", provider=provider, kind=kind, source=top.here(),
        runtime="container", memory_mb=limits.memory_mb("memory"),
        timeout_s=pod.number("timeoutSeconds"), concurrency=concurrency,
        image=container.text("image") or "", env_keys=env,
        **attributes({k: v for k, v in tags.items() if k != COMPONENT}, top.here()))
