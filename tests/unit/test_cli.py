"""The ``governor`` command line: its version, its help, and what it says when an
extra it needs is not installed."""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions, version
from pathlib import Path

import orjson
import pytest

from streams.cli import EXTRAS, build_parser, main

ROOT = Path(__file__).parents[2]


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """``parser`` and every (sub)command parser under it."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                found += _parsers(child)
    return found


def _examples(parser: argparse.ArgumentParser) -> list[str]:
    """The ``governor …`` command lines of ``parser``'s epilog."""
    lines = (parser.epilog or "").splitlines()[1:]
    found = []
    for line in lines:
        start = re.search(r"(?:^|[\s(])(governor .*)", line)
        assert start, f"{parser.prog}: example without a governor command: {line!r}"
        text = re.split(r"\s{2,}#", start[1])[0]  # a comment
        if "$(governor" in line:
            text = text.split(")")[0]
        found.append(text.split(" > ")[0].split(" | ")[0].strip())  # redirection
    return found


def _leaves() -> list[argparse.ArgumentParser]:
    return [p for p in _parsers(build_parser()) if p.get_default("run") is not None]


def _normal(distribution: str) -> str:
    """A distribution name as PEP 503 compares them (``prometheus_client`` is
    ``prometheus-client``)."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


def test_the_extras_modules_match_the_package_metadata() -> None:
    """Each requirement of each extra is named by a module in :data:`EXTRAS`, so the
    check before a command runs follows what ``pyproject.toml`` declares."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    providers = packages_distributions()
    for extra, modules in EXTRAS.items():
        wanted = {_normal(re.split(r"[<>=\[ ]", r)[0]) for r in extras[extra]
                  if not r.startswith("faas-governor")}
        named = {_normal(d) for m in modules for d in providers.get(m, [])}
        assert wanted <= named, (extra, wanted - named)


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"governor {version('faas-governor')}"


def test_every_command_has_help_with_examples_that_parse() -> None:
    parsers = _parsers(build_parser())
    assert len(parsers) >= 20
    for parser in parsers:
        assert parser.epilog and parser.epilog.startswith("example"), parser.prog
        examples = _examples(parser)
        assert examples, parser.prog
        name = parser.prog.removeprefix("governor").strip()
        assert any(e.removeprefix("governor").lstrip().startswith(name) for e in examples), (
            f"{parser.prog}: no example of the command itself")
        for example in examples:
            argv = shlex.split(example)[1:]
            try:
                build_parser().parse_args(argv)
            except SystemExit as exit_:  # --help exits 0; a wrong example exits 2
                assert exit_.code == 0, f"{parser.prog}: example does not parse: {example}"


def test_help_prints_the_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["query", "--help"])
    out = capsys.readouterr().out
    assert "--param NAME=VALUE" in out
    assert "governor query --file what_happened_to_function.sql --param function=checkout" in out


def _without(modules: list[str], argvs: list[list[str]], tmp_path: Path) -> list[dict[str, object]]:
    """Run ``main(argv)`` for each of ``argvs`` in one process where ``modules`` cannot
    be imported (as after ``pip install`` without their extra)."""
    script = (
        "import contextlib, io, sys, orjson\n"
        f"for m in {modules!r}: sys.modules[m] = None\n"
        "from streams.cli import main\n"
        "out = []\n"
        f"for argv in {argvs!r}:\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err):\n"
        "        code = main(argv)\n"
        "    out.append({'argv': argv, 'code': code, 'stderr': err.getvalue()})\n"
        "print(orjson.dumps(out).decode())\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                              "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr
    results: list[dict[str, object]] = orjson.loads(run.stdout)
    return results


def test_with_the_agent_extra_alone_each_command_names_the_extra_it_needs(
        tmp_path: Path) -> None:
    """``pip install "faas-governor[agent]"`` installs the ``governor`` script too; its
    commands once died with a ModuleNotFoundError traceback."""
    streams_commands = [p for p in _leaves() if p.get_default("needs") == "streams"]
    assert len(streams_commands) >= 15
    argvs = [shlex.split(_examples(p)[0])[1:] for p in streams_commands]
    missing = [*EXTRAS["streams"], *EXTRAS["local"]]
    for result in _without(missing, argvs, tmp_path):
        assert result["code"] == 2, result
        command = " ".join(p for p in result["argv"] if not p.startswith("-"))  # type: ignore[attr-defined]
        stderr = str(result["stderr"])
        assert stderr.startswith("governor: error: governor "), result
        assert 'needs the streams extra' in stderr and 'pip install "faas-governor[streams]"' \
            in stderr, result
        assert "Traceback" not in stderr and command.split()[0] in stderr, result


def test_without_any_extra_the_agent_commands_name_theirs(tmp_path: Path) -> None:
    agent_commands = [p for p in _leaves() if p.get_default("needs") == "agent"]
    assert agent_commands
    argvs = [shlex.split(_examples(p)[0])[1:] for p in agent_commands]
    missing = [*EXTRAS["agent"], *EXTRAS["streams"], *EXTRAS["local"]]
    for result in _without(missing, argvs, tmp_path):
        assert result["code"] == 2, result
        assert 'pip install "faas-governor[agent]"' in str(result["stderr"]), result


def test_a_missing_module_met_while_running_names_its_extra(tmp_path: Path) -> None:
    """The streams extra without the local one: the embedded engine (chDB) is missing
    only once a query opens it; the error names the extra, not the client library's
    own advice."""
    [result] = _without([*EXTRAS["local"]], [["--data-dir", str(tmp_path), "query",
                                              "SELECT 1"]], tmp_path)
    assert result["code"] == 2
    assert str(result["stderr"]).strip() == (
        "governor: error: governor query needs the local extra (chdb is not installed): "
        'pip install "faas-governor[local]"')
