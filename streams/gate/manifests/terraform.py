"""Terraform plan JSON (``terraform show -json plan.out``): the planned state of
``aws_lambda_function``, ``google_cloudfunctions2_function`` and
``azurerm_linux_function_app`` from ``resource_changes``; resources the plan deletes
and every other type are listed as skipped. A resource's line is the line of its
``"address"`` in the file."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from streams.errors import ManifestError
from streams.gate.manifests.fields import Fields
from streams.gate.spec import FunctionSpec, Manifest, Skipped, Source, attributes


def is_plan(document: Any) -> bool:
    """Whether ``document`` looks like a Terraform plan in JSON."""
    return isinstance(document, dict) and "resource_changes" in document and (
        "format_version" in document or "terraform_version" in document)


def read(path: str, document: Any, text: str) -> Manifest:
    """The functions a plan creates or keeps."""
    changes = document.get("resource_changes")
    if not isinstance(changes, list):
        raise ManifestError(f"{path}:1: expected resource_changes to be a list")
    functions, skipped = [], []
    for change in changes:
        address = change.get("address", "?") if isinstance(change, dict) else "?"
        source = Source(path, _line(text, address))
        if not isinstance(change, dict) or not isinstance(change.get("change"), dict):
            raise ManifestError(f"{source}: expected a resource change with a change object")
        kind = str(change.get("type", ""))
        after = change["change"].get("after")
        if kind not in _READERS:
            skipped.append(Skipped(source, f"{address} ({kind})", "not a function"))
        elif after is None:
            skipped.append(Skipped(source, address, "deleted by this plan"))
        else:
            fields = Fields(path, after, source.line)
            functions.append(_READERS[kind](fields, source, kind))
    return Manifest(path, "terraform", tuple(functions), tuple(skipped))


def _line(text: str, address: str) -> int:
    at = text.find(f'"address": {json.dumps(address)}')
    if at < 0:
        at = text.find(json.dumps(address))
    return text.count("\n", 0, at) + 1 if at >= 0 else 1


def _block(f: Fields, key: str) -> Fields:
    """A Terraform nested block: a list of one object (empty when absent)."""
    items = f.items(key)
    return Fields(f.path, items[0] if items and isinstance(items[0], dict) else {}, f.line)


def _aws(f: Fields, source: Source, kind: str) -> FunctionSpec:
    architectures = [str(a) for a in f.items("architectures")]
    reserved = f.integer("reserved_concurrent_executions")
    vpc = _block(f, "vpc_config").items("subnet_ids")
    image = f.text("image_uri") or ""
    return FunctionSpec(
        name=f.text("function_name") or "", provider="aws", kind=kind, source=source,
        runtime=f.text("runtime") or ("image" if image else ""),
        architecture=architectures[0] if architectures else "x86_64",
        memory_mb=f.integer("memory_size"), timeout_s=f.number("timeout"),
        concurrency=reserved if reserved is not None and reserved >= 0 else None,
        image=image, handler=f.text("handler") or "",
        env_keys=_block(f, "environment").names("variables"), network="vpc" if vpc else "",
        **attributes(f.tags("tags"), source))


def _gcp(f: Fields, source: Source, kind: str) -> FunctionSpec:
    build, service = _block(f, "build_config"), _block(f, "service_config")
    return FunctionSpec(
        name=f.text("name") or "", provider="gcp", kind=kind, source=source,
        runtime=build.text("runtime") or "", memory_mb=service.memory_mb("available_memory"),
        timeout_s=service.number("timeout_seconds"),
        concurrency=service.integer("max_instance_count"),
        handler=build.text("entry_point") or "",
        env_keys=service.names("environment_variables"),
        network="vpc" if service.text("vpc_connector") else "",
        **attributes(f.tags("labels"), source))


def _azure(f: Fields, source: Source, kind: str) -> FunctionSpec:
    stack = _block(_block(f, "site_config"), "application_stack")
    runtime = next((f"{k.removesuffix('_version')}{v}" for k, v in stack.node.items()
                    if k.endswith("_version") and v), "")
    return FunctionSpec(
        name=f.text("name") or "", provider="azure", kind=kind, source=source,
        runtime=runtime, env_keys=f.names("app_settings"),
        network="vpc" if f.text("virtual_network_subnet_id") else "",
        **attributes(f.tags("tags"), source))


_READERS: dict[str, Callable[[Fields, Source, str], FunctionSpec]] = {
    "aws_lambda_function": _aws,
    "google_cloudfunctions2_function": _gcp,
    "azurerm_linux_function_app": _azure,
}
