"""The Lambda layer, end to end against the real broker.

AWS Lambda itself cannot run here: :mod:`tests.integration.lambda_platform` serves the
platform's documented Runtime and Extensions APIs. The layer is built as users build
it (``governor package lambda-layer``, this machine's architecture and Python) and
unpacked as Lambda unpacks it; a real ``awslambdaric`` runs a governed handler with the
layer's ``python/`` on its path, and the extension runs as its own process, started by
the layer's ``extensions/governor`` launcher.
"""

from __future__ import annotations

import os
import platform as platform_module
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from schemas import CostEvent, Span, decode
from tests.integration.lambda_platform import LambdaPlatform

pytestmark = pytest.mark.integration

HANDLER = '''
import agents
from agents import govern


@govern(memory_mb=256)
def handler(event, context):
    return {"n": event["n"], "handed": agents.stats().get("handed_to_extension", 0),
            "produced": agents.stats().get("produced", 0)}
'''


@pytest.fixture
def platform() -> Iterator[LambdaPlatform]:
    started = LambdaPlatform()
    yield started
    started.close()


def _read(broker: str, topic: str, count: int) -> list[bytes]:
    """The topic's records from the start (assigned, no group), ``count`` or all there."""
    consumer = Consumer({"bootstrap.servers": broker, "group.id": "unused",
                         "enable.auto.commit": False})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    values: list[bytes] = []
    try:
        for _ in range(150):
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                values.append(message.value())
            elif len(values) >= count:
                break
    finally:
        consumer.close()
    return values


@pytest.fixture(scope="module")
def layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The layer for this machine, unpacked (Lambda's ``/opt``)."""
    from streams.ops.layer import build_layer

    arch = {"x86_64": "x86_64", "aarch64": "arm64"}[platform_module.machine()]
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    built = build_layer(tmp_path_factory.mktemp("dist"), arch, python)
    opt = tmp_path_factory.mktemp("opt")
    with zipfile.ZipFile(built) as archive:
        for info in archive.infolist():
            archive.extract(info, opt)
            (opt / info.filename).chmod(info.external_attr >> 16 & 0o777)
    return opt


def test_the_handler_hands_off_and_the_extension_delivers_through_a_shutdown(
        platform: LambdaPlatform, broker: str, prefix: str, tmp_path: Path,
        layer: Path) -> None:
    (tmp_path / "handler.py").write_text(HANDLER)
    socket = str(tmp_path / "governor.sock")
    env = {**os.environ, "AWS_LAMBDA_RUNTIME_API": platform.address,
           "GOVERNOR_KAFKA_BOOTSTRAP": broker, "GOVERNOR_TOPIC_PREFIX": prefix,
           "GOVERNOR_VERDICT_KEY": "k", "GOVERNOR_EXTENSION_SOCKET": socket,
           "AWS_LAMBDA_FUNCTION_NAME": "layer-fn", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
           "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256", "AWS_REGION": "eu-west-1",
           "GOVERNOR_LAYER_DIR": str(layer), "GOVERNOR_EXTENSION_PYTHON": sys.executable,
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(layer / "python")])}
    extension = subprocess.Popen([str(layer / "extensions" / "governor")], env=env,
                                 stderr=subprocess.PIPE, text=True)
    runtime = None
    try:
        assert platform.registered.wait(30), "the extension did not register"
        assert platform.extension_names == ["governor"]
        runtime = subprocess.Popen([sys.executable, "-m", "awslambdaric", "handler.handler"],
                                   env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
        answers = [platform.invoke({"n": n}) for n in range(40)]
        assert [a["n"] for _, a in answers] == list(range(40))
        assert all(outcome == "response" for outcome, _ in answers)
        last = answers[-1][1]
        # the handler handed each earlier invocation's span and cost to the extension and
        # produced nothing to Kafka itself
        assert (last["n"], last["handed"], last["produced"]) == (39, 2 * 39, 0)
        platform.shut_down()  # right after the last invocation: nothing may be lost
        _, log = extension.communicate(timeout=30)
        assert extension.returncode == 0, log
    finally:
        if runtime is not None:
            runtime.kill()
            runtime.wait()
        if extension.poll() is None:
            extension.kill()
    costs = [decode(v, CostEvent) for v in _read(broker, f"{prefix}.costs", 40)]
    spans = [decode(v, Span) for v in _read(broker, f"{prefix}.spans", 40)]
    assert len(costs) == len(spans) == 40
    assert {c.function for c in costs} == {"layer-fn"} and costs[0].memory_mb == 256
    assert len({c.invocation_id for c in costs}) == 40  # each the platform's request id
    assert spans[0].resource["cloud.region"] == "eu-west-1"
    assert spans[0].links[0].trace_id == "5759e988bd862e3fe1be46a994272793"  # X-Ray
