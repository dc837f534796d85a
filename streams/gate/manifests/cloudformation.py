"""AWS SAM and CloudFormation templates: ``AWS::Serverless::Function`` and
``AWS::Lambda::Function`` (SAM's ``Globals.Function`` applied); every other
resource is listed as skipped."""

from __future__ import annotations

from typing import Any

from streams.errors import ManifestError
from streams.gate.manifests.fields import Fields
from streams.gate.spec import FunctionSpec, Manifest, Skipped, Source, attributes

FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")


def is_template(document: Any) -> bool:
    """Whether ``document`` looks like a CloudFormation or SAM template."""
    return isinstance(document, dict) and (
        "AWSTemplateFormatVersion" in document or "Transform" in document
        or (isinstance(document.get("Resources"), dict) and any(
            isinstance(r, dict) and str(r.get("Type", "")).startswith("AWS::")
            for r in document["Resources"].values())))


def read(path: str, document: Any) -> Manifest:
    """The functions of a template."""
    top = Fields(path, document)
    resources = top.child("Resources")
    if not resources.node:
        raise ManifestError(f"{top.here('Resources')}: expected a Resources mapping with at "
                            "least one resource")
    defaults = top.child("Globals").child("Function").node
    functions, skipped = [], []
    for logical_id in resources.node:
        resource, source = resources.child(logical_id), resources.here(logical_id)
        kind = resource.text("Type")
        if kind is None:
            raise ManifestError(f"{source}: expected a Type for resource {logical_id}")
        if kind not in FUNCTION_TYPES:
            skipped.append(Skipped(source, f"{logical_id} ({kind})", "not a function"))
            continue
        properties = resource.child("Properties")
        if kind == "AWS::Serverless::Function":
            merged = {**defaults, **properties.node, **{  # SAM merges maps key by key
                key: {**value, **properties.node[key]} for key, value in defaults.items()
                if isinstance(value, dict) and isinstance(properties.node.get(key), dict)}}
            properties = Fields(path, _located(merged, properties.node), properties.line)
        functions.append(_function(logical_id, kind, source, properties))
    return Manifest(path, "cloudformation", tuple(functions), tuple(skipped))


def _located(merged: dict[str, Any], like: Any) -> Any:
    """``merged`` carrying the line information of ``like`` (a located mapping)."""
    node = type(like)(merged)
    for name in ("line", "lines"):
        if hasattr(like, name):
            setattr(node, name, getattr(like, name))
    return node


def _function(logical_id: str, kind: str, source: Source, p: Fields) -> FunctionSpec:
    architectures = [str(a) for a in p.items("Architectures")]
    image = p.text("ImageUri") or p.child("Code").text("ImageUri") or ""
    vpc = p.child("VpcConfig").node
    return FunctionSpec(
        name=p.text("FunctionName") or logical_id, provider="aws", kind=kind, source=source,
        runtime=p.text("Runtime") or ("image" if image else ""),
        architecture=architectures[0] if architectures else "x86_64",
        memory_mb=p.integer("MemorySize"), timeout_s=p.number("Timeout"),
        concurrency=p.integer("ReservedConcurrentExecutions"), image=image,
        handler=p.text("Handler") or "",
        env_keys=p.child("Environment").names("Variables"),
        network="vpc" if vpc else "",
        **attributes(p.tags("Tags"), source))
