from __future__ import annotations

import sys
import types

from grm.train.monitor import MetricsLog, read_metrics


class _Writer:
    instances: list[_Writer] = []

    def __init__(self, log_dir: str) -> None:
        self.log_dir, self.scalars, self.closed = log_dir, [], False
        _Writer.instances.append(self)

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars.append((tag, value, step))

    def close(self) -> None:
        self.closed = True


def test_jsonl_records_and_tensorboard_scalars(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=_Writer))
    log = MetricsLog(tmp_path)
    log.write("epoch", 3, {"loss": 1.5, "note": "text"})
    log.write("val", 3, {"val_auc": 42.0})
    log.close()
    assert [(r["kind"], r["step"]) for r in read_metrics(tmp_path / "metrics.jsonl")] == [("epoch", 3), ("val", 3)]
    assert read_metrics(tmp_path / "metrics.jsonl", "val")[0]["val_auc"] == 42.0
    (writer,) = _Writer.instances
    assert writer.scalars == [("epoch/loss", 1.5, 3), ("val/val_auc", 42.0, 3)] and writer.closed
    assert writer.log_dir == str(tmp_path / "tensorboard")


def test_without_tensorboard_only_jsonl(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    log = MetricsLog(tmp_path)
    log.write("iter", 1, {"loss": 2.0})
    assert read_metrics(tmp_path / "metrics.jsonl")[0]["loss"] == 2.0


def test_missing_tensorboard_is_said_once_and_only_at_debug_level(tmp_path, monkeypatch, caplog):
    import logging

    from grm.train import monitor

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    monkeypatch.setattr(monitor, "_said", set())
    with caplog.at_level(logging.INFO, logger="grm.train.monitor"):
        MetricsLog(tmp_path / "a")
    assert not caplog.records  # a run without TensorBoard is normal: nothing at INFO
    with caplog.at_level(logging.DEBUG, logger="grm.train.monitor"):
        MetricsLog(tmp_path / "b")
        MetricsLog(tmp_path / "c")
    assert [r.levelno for r in caplog.records] == []  # already said (at debug) by the first log of this process
    monkeypatch.setattr(monitor, "_said", set())
    with caplog.at_level(logging.DEBUG, logger="grm.train.monitor"):
        MetricsLog(tmp_path / "d")
        MetricsLog(tmp_path / "e")
    (record,) = caplog.records
    assert record.levelno == logging.DEBUG and "tensorboard is not installed" in record.getMessage()
