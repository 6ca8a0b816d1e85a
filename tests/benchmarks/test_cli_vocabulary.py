"""grm-bench's options in the words of every grm command: --model (with --engine), the runtime's backend list, and
progress bars only on a terminal."""

from __future__ import annotations

import io

import pytest
import typer.main

from grm.benchmarks import cli
from grm.runtime.backends import BACKENDS

from .test_cli import call_main, fake_models  # noqa: F401 - fake_models is a fixture
from .test_run import otb_tree


def _params(command: str) -> dict[str, object]:
    group = typer.main.get_command(cli.app)
    return {opt: p for p in group.commands[command].params for opt in p.opts}  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", ["run", "speed"])
def test_model_and_engine_are_one_option(command: str) -> None:
    params = _params(command)
    assert params["--model"] is params["--engine"]


def test_backend_help_is_the_runtime_list() -> None:
    for command in ("run", "speed"):
        text = _params(command)["--backend"].help  # type: ignore[attr-defined]
        assert text == f"One of: {', '.join(BACKENDS)}."


def _argv(root, results, flag: str, model: str) -> list[str]:
    return [
        "--dataset",
        "otb",
        flag,
        model,
        "--data-root",
        str(root),
        "--partial",
        "--results-dir",
        str(results),
        "--no-analyze",
    ]


def test_model_runs_and_engine_resumes_it(tmp_path, fake_models, capsys) -> None:  # noqa: F811
    root = otb_tree(tmp_path / "otb")
    assert call_main(_argv(root, tmp_path / "res", "--model", fake_models[0])) == 0
    assert "2 sequences tracked, 0 already done" in capsys.readouterr().out
    assert call_main(_argv(root, tmp_path / "res", "--engine", fake_models[0])) == 0
    assert "0 sequences tracked, 2 already done" in capsys.readouterr().out


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bars_on_a_terminal_plain_lines_elsewhere(tmp_path, fake_models, capsys, monkeypatch) -> None:  # noqa: F811
    root = otb_tree(tmp_path / "otb")
    assert call_main(_argv(root, tmp_path / "a", "--model", fake_models[0])) == 0
    plain = capsys.readouterr()
    lines = [line for line in plain.out.splitlines() if line.startswith("grm-bench: otb ")]
    assert len(lines) == 2 and lines[0].startswith("grm-bench: otb 1/2: ") and lines[0].endswith(" frames")
    assert "\r" not in plain.err and "seq/s" not in plain.err
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert call_main(_argv(root, tmp_path / "b", "--model", fake_models[0])) == 0
    drawn = capsys.readouterr()
    assert "\r" in terminal.getvalue() and "2/2" in terminal.getvalue()
    assert not [line for line in drawn.out.splitlines() if line.startswith("grm-bench: otb ")]
