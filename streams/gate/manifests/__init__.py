"""Deployment manifests in, :class:`~streams.gate.spec.FunctionSpec` out.

:func:`read_manifest` recognises the format by content: a Terraform plan (JSON with
``resource_changes``), a CloudFormation/SAM template, a Serverless Framework
service, or Kubernetes/Knative objects. A file that is none of them returns None.
"""

from __future__ import annotations

from pathlib import Path

from streams.errors import ManifestError
from streams.gate.manifests import cloudformation, kubernetes, serverless, terraform
from streams.gate.manifests.yamlfile import load_json, load_yaml
from streams.gate.spec import Manifest

SUFFIXES = (".yaml", ".yml", ".json", ".template")
"""File names a directory is searched for."""

__all__ = ["SUFFIXES", "manifest_files", "read_manifest"]


def read_manifest(path: str, text: str) -> Manifest | None:
    """The functions of one file, or None when it is not a deployment manifest.

    Raises :class:`~streams.errors.ManifestError` (``path:line: expected …``) for a
    malformed file or a resource with a value of the wrong kind.
    """
    if path.endswith(".json") or text.lstrip().startswith("{"):
        document = load_json(text, path)
        if terraform.is_plan(document):
            return terraform.read(path, document, text)
        try:  # JSON is YAML: read again for the line of each resource
            documents = load_yaml(text, path)
        except ManifestError:
            documents = [document]
    else:
        documents = load_yaml(text, path)
    if len(documents) == 1 and cloudformation.is_template(documents[0]):
        return cloudformation.read(path, documents[0])
    if len(documents) == 1 and serverless.is_serverless(documents[0]):
        return serverless.read(path, documents[0])
    if kubernetes.is_kubernetes(documents):
        return kubernetes.read(path, documents)
    return None


def manifest_files(root: Path) -> list[Path]:
    """``root`` itself, or the files under it with a manifest's suffix (sorted, hidden
    directories left out)."""
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))
