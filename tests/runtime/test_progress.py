"""Progress bars only on a terminal, and the closing lines every long command ends with."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from grm.runtime.progress import StageBars, folder_bytes, megabytes, next_step, shell_word, wrote


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal", [True, False])
def test_bars_are_drawn_only_on_a_terminal(terminal: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    stream = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    with StageBars() as bars:
        bars.reach("parity", 3, 8)
        bars.advance("evaluate", 2, 4)
    shown = stream.getvalue()
    if terminal:
        assert "parity:" in shown and "/8" in shown and "evaluate:" in shown
    else:
        assert shown == ""


def test_no_progress_draws_nothing_even_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = _Terminal()
    monkeypatch.setattr(sys, "stderr", stream)
    with StageBars(disable=True) as bars:
        bars.reach("epoch 1", 1, 2)
    assert stream.getvalue() == ""


def test_a_full_bar_is_cleared_and_the_next_report_opens_a_new_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", _Terminal())
    bars = StageBars()
    bars.advance("collect crops", 3, 4)
    assert bars.bars["collect crops"].n == 3
    bars.advance("collect crops", 1, 4)
    assert "collect crops" not in bars.bars  # full: closed, so a note printed next starts on a clean line
    bars.advance("collect crops", 1, 6)  # the next sequence of the same stage
    bar = bars.bars["collect crops"]
    assert (bar.n, bar.total) == (1, 6)
    bars.reach("parity", 8, 8)
    assert "parity" not in bars.bars
    bars.close()
    assert not bars.bars


def test_closing_lines(tmp_path: Path) -> None:
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "a.npz").write_bytes(b"x" * 1500)
    (tmp_path / "cache" / "b.json").write_bytes(b"y" * 500)
    assert wrote(tmp_path / "m.onnx", "fp32, opset 18") == f"wrote {tmp_path / 'm.onnx'} (fp32, opset 18)"
    assert wrote(tmp_path / "cache", "crop cache") == f"wrote {tmp_path / 'cache'}/ (crop cache)"
    assert folder_bytes(tmp_path / "cache") == 2000 and folder_bytes(tmp_path / "missing") == 0
    assert megabytes(25_300_000) == "25.3 MB"
    assert next_step(f"grm-run SOURCE --model {shell_word('my model.onnx')}") == (
        "next: grm-run SOURCE --model 'my model.onnx'"
    )
    assert shell_word("plain/path.onnx") == "plain/path.onnx"
