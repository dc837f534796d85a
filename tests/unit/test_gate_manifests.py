"""The manifest readers on realistic files (examples/gate) and on malformed ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.errors import ManifestError
from streams.gate.manifests import manifest_files, read_manifest
from streams.gate.spec import FunctionSpec, Manifest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "gate"


def _read(relative: str) -> Manifest:
    path = EXAMPLES / relative
    manifest = read_manifest(relative, path.read_text())
    assert manifest is not None
    return manifest


def _by_name(manifest: Manifest) -> dict[str, FunctionSpec]:
    return {f.name: f for f in manifest.functions}


def test_sam_template_with_intrinsic_tags_and_globals() -> None:
    manifest = _read("sam/pass/template.yaml")
    assert manifest.format == "cloudformation"
    f = _by_name(manifest)
    checkout, refunds = f["checkout"], f["refunds"]
    assert (checkout.provider, checkout.kind, checkout.runtime, checkout.architecture) == (
        "aws", "AWS::Serverless::Function", "python3.12", "arm64")
    assert (checkout.memory_mb, checkout.timeout_s, checkout.concurrency) == (512, 10.0, 50)
    assert checkout.env_keys == ("ORDERS_TABLE", "STAGE", "STRIPE_SECRET_ARN")  # names only
    assert checkout.egress == ("api.stripe.com", "dynamodb.us-east-1.amazonaws.com")
    assert checkout.team == "payments"
    assert str(checkout.source) == "sam/pass/template.yaml:19"
    # AWS::Lambda::Function: Globals do not apply, tags are a list of {Key, Value}
    assert (refunds.kind, refunds.architecture, refunds.memory_mb, refunds.timeout_s) == (
        "AWS::Lambda::Function", "x86_64", 256, 15.0)
    assert refunds.team == "payments" and refunds.egress == ("api.stripe.com",)
    assert {s.what for s in manifest.skipped} == {
        "OrdersTable (AWS::DynamoDB::Table)", "CheckoutRole (AWS::IAM::Role)"}
    assert all(s.why == "not a function" for s in manifest.skipped)


def test_serverless_service_with_provider_defaults() -> None:
    manifest = _read("serverless/pass/serverless.yml")
    f = _by_name(manifest)
    rank, refresh = f["rank"], f["refresh"]
    assert (rank.memory_mb, rank.timeout_s, rank.concurrency, rank.architecture) == (
        2048, 60.0, 20, "arm64")
    assert rank.model_serving and rank.fairness_disparity == 0.08
    assert rank.model_card == "s3://recs-models/cards/ranker-v7.md"
    assert rank.team == "ml-platform" and rank.egress == ("s3.eu-west-1.amazonaws.com",)
    assert (refresh.memory_mb, refresh.timeout_s, refresh.handler) == (
        1024, 30.0, "handler.refresh")
    assert refresh.env_keys == ("FEATURE_STORE_URL", "LOG_LEVEL", "MODEL_BUCKET")
    assert not refresh.model_serving


def test_terraform_plan_three_providers_deletes_skipped() -> None:
    manifest = _read("terraform/pass/plan.json")
    f = _by_name(manifest)
    assert (f["thumbnail"].provider, f["thumbnail"].memory_mb, f["thumbnail"].concurrency) == (
        "aws", 1024, None)  # -1 is "unreserved"
    assert f["thumbnail"].env_keys == ("BUCKET", "QUALITY")
    assert (f["ingest"].provider, f["ingest"].memory_mb, f["ingest"].runtime,
            f["ingest"].egress) == ("gcp", 488, "python312", ("pubsub.googleapis.com",))
    assert (f["reports"].provider, f["reports"].runtime, f["reports"].team) == (
        "azure", "python3.11", "finance")
    assert str(f["thumbnail"].source) == "terraform/pass/plan.json:6"
    assert {(s.what, s.why) for s in manifest.skipped} == {
        ("aws_s3_bucket.media (aws_s3_bucket)", "not a function"),
        ("aws_lambda_function.legacy_resize", "deleted by this plan")}


def test_kubernetes_knative_and_labelled_deployment() -> None:
    manifest = _read("kubernetes/pass/functions.yaml")
    f = _by_name(manifest)
    knative, relay = f["invoice-pdf"], f["webhook-relay"]
    assert (knative.provider, knative.memory_mb, knative.timeout_s, knative.concurrency) == (
        "knative", 512, 120.0, 80)
    assert knative.env_keys == ("API_TOKEN", "BUCKET") and knative.team == "finance"
    assert knative.egress == ("storage.googleapis.com",)
    assert (relay.provider, relay.memory_mb, relay.concurrency, relay.egress) == (
        "kubernetes", 256, 3, ("hooks.slack.com",))
    assert "app.kubernetes.io/component" not in relay.labels
    assert [s.what for s in manifest.skipped] == ["relay-config (ConfigMap)"]
    assert str(knative.source) == "kubernetes/pass/functions.yaml:2"


def test_a_deployment_without_the_label_is_skipped_with_the_reason() -> None:
    text = ("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n"
            "  template:\n    spec:\n      containers: [{image: nginx}]\n")
    manifest = read_manifest("web.yaml", text)
    assert manifest is not None and manifest.functions == ()
    assert "app.kubernetes.io/component" in manifest.skipped[0].why


def test_other_files_are_not_manifests() -> None:
    assert read_manifest("package.json", '{"name": "x", "version": "1.0.0"}') is None
    assert read_manifest(".github/workflows/ci.yml", "on: push\njobs: {}\n") is None


@pytest.mark.parametrize(("path", "text", "expected"), [
    ("template.yaml", "Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n"
     "    Properties:\n      MemorySize: [1024\n", r"^template\.yaml:6: expected valid YAML"),
    ("template.yaml", "AWSTemplateFormatVersion: '2010-09-09'\nResources:\n  Fn:\n"
     "    Type: AWS::Serverless::Function\n    Properties:\n      MemorySize: lots\n",
     r"^template\.yaml:6: expected a number for MemorySize, got 'lots'"),
    ("template.yaml", "AWSTemplateFormatVersion: '2010-09-09'\nResources:\n  Fn:\n"
     "    Properties: {}\n", r"^template\.yaml:3: expected a Type for resource Fn"),
    ("template.yaml", "AWSTemplateFormatVersion: '2010-09-09'\nResources: []\n",
     r"^template\.yaml:2: expected a mapping for Resources"),
    ("serverless.yml", "service: s\nprovider:\n  name: aws\nfunctions:\n  f:\n"
     "    handler: h.f\n    timeout: 1.5.2\n",
     r"^serverless\.yml:7: expected a number for timeout"),
    ("serverless.yml", "service: s\nprovider:\n  name: openwhisk\nfunctions: {}\n",
     r"^serverless\.yml:3: expected provider name aws, google or azure"),
    ("plan.json", '{"format_version": "1.2",\n "resource_changes": [\n  {"address": "x",\n'
     '   "type": "aws_lambda_function"}\n ]}\n',
     r"^plan\.json:3: expected a resource change with a change object"),
    ("plan.json", '{"format_version": "1.2",\n "resource_changes": [,]}\n',
     r"^plan\.json:2: expected valid JSON"),
    ("fn.yaml", "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: f\n"
     "spec:\n  template:\n    spec:\n      containers: []\n",
     r"^fn\.yaml:8: expected a list of containers with at least one container"),
    ("fn.yaml", "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: f\n"
     "spec:\n  template:\n    spec:\n      containers:\n        - image: x\n"
     "          resources:\n            limits:\n              memory: a lot\n",
     r"^fn\.yaml:12: expected a memory size such as 512, 512Mi or 1Gi"),
    ("template.yaml", "Resources:\n  Fn:\n    Type: AWS::Lambda::Function\n    Properties:\n"
     "      Tags:\n        governor.fairness-disparity: high\n",
     r"^template\.yaml:2: expected a number for governor\.fairness-disparity"),
])
def test_a_malformed_file_names_file_line_and_what_was_expected(
        path: str, text: str, expected: str) -> None:
    with pytest.raises(ManifestError, match=expected):
        read_manifest(path, text)


def test_intrinsics_read_as_unknown_not_as_errors() -> None:
    text = ("Resources:\n  Fn:\n    Type: AWS::Lambda::Function\n    Properties:\n"
            "      FunctionName: !Sub '${AWS::StackName}-fn'\n      MemorySize: !Ref Memory\n"
            "      Timeout: !If [IsProd, 30, 10]\n")
    manifest = read_manifest("t.yaml", text)
    assert manifest is not None
    (fn,) = manifest.functions
    assert (fn.name, fn.memory_mb, fn.timeout_s) == ("Fn", None, None)


def test_directories_are_searched_for_manifests(tmp_path: Path) -> None:
    (tmp_path / "infra").mkdir()
    (tmp_path / "infra" / "template.yaml").write_text("x: 1\n")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config.yaml").write_text("x: 1\n")
    (tmp_path / "README.md").write_text("# x\n")
    assert manifest_files(tmp_path) == [tmp_path / "infra" / "template.yaml"]


def test_a_json_template_keeps_the_line_of_each_resource() -> None:
    text = ('{\n  "AWSTemplateFormatVersion": "2010-09-09",\n  "Resources": {\n'
            '    "Fn": {\n      "Type": "AWS::Lambda::Function",\n'
            '      "Properties": {"MemorySize": 256, "Runtime": "java21"}\n    }\n  }\n}\n')
    manifest = read_manifest("template.json", text)
    assert manifest is not None
    (fn,) = manifest.functions
    assert (str(fn.source), fn.memory_mb, fn.runtime) == ("template.json:4", 256, "java21")
