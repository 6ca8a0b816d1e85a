"""The training loop: one process or one rank of a ``torchrun`` job (docs/training.md).

Per epoch: every rank draws its disjoint share of the epoch's samples, runs forward / loss / backward,
clips the gradient norm to 0.1 and steps AdamW; after the epoch the StepLR schedule steps, rank 0 writes
a resumable checkpoint (and an official-format file under the official save policy), and, every
``val_interval`` epochs, tracks the held-out sequences and logs their AUC.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from grm.runtime.errors import CheckpointError, ConfigError, Interrupted
from grm.runtime.interrupts import InterruptWatch
from grm.runtime.progress import shell_word
from grm.train import checkpointing as ckpt
from grm.train.config import GrmConfig, get_config
from grm.train.data.processing import Processing
from grm.train.data.sampler import PairSampler, collate
from grm.train.data.sources import DatasetRoots, build_datasets
from grm.train.distributed import (
    DistInfo,
    RankIndices,
    any_rank,
    average_across_ranks,
    barrier,
    choose_device,
    seed_everything,
)
from grm.train.losses import LossWeights, tracking_loss
from grm.train.monitor import MetricsLog
from grm.train.optim import GROUP_NAMES, build_optimizer, build_scheduler, clip_gradients

log = logging.getLogger(__name__)
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    """One training run. ``None`` values take the config's recipe.

    Attributes:
        config: config name.
        output: run folder (checkpoints/, metrics.jsonl, tensorboard/).
        roots: where the training datasets live.
        epochs / batch_size / samples_per_epoch / num_workers: overrides of the recipe.
        amp: None (fp32, the official recipe), "bf16" or "fp16".
        pretrained: MAE/DeiT file for the backbone.
        resume: continue from the newest checkpoint in ``output/checkpoints``.
        val_root: GOT-10k-layout folder of held-out sequences; validation is skipped without it.
        val_interval / val_sequences: how often and on how many sequences to validate.
        seed: base seed (ranks use seed + rank for the model's randomness).
        backbone_multiplier: backbone learning-rate factor (official 0.1, which assumes a pretrained
            backbone; from-scratch runs such as the demo use 1.0).
        lr: base learning rate override (fine-tuning a trained model uses about a tenth of the recipe's).
        device: torch device; default cuda:<local rank> when present, else CPU.
        keep: project checkpoints kept.
        log_interval: iterations between "iter" lines in the metrics log.
    """

    config: str
    output: Path
    roots: DatasetRoots = field(default_factory=DatasetRoots)
    epochs: int | None = None
    batch_size: int | None = None
    samples_per_epoch: int | None = None
    num_workers: int | None = None
    amp: str | None = None
    pretrained: Path | None = None
    resume: bool = False
    val_root: Path | None = None
    val_interval: int = 20
    val_sequences: int | None = None
    seed: int | None = None
    backbone_multiplier: float | None = None
    lr: float | None = None
    device: str | None = None
    keep: int = 2
    log_interval: int = 50

    def __post_init__(self) -> None:
        if Path(self.output).exists() and not Path(self.output).is_dir():
            raise ConfigError(f"--output {self.output} is a file; give the run folder (created when missing)")
        if self.val_root is not None and not Path(self.val_root).is_dir():
            raise ConfigError(f"--val-root {self.val_root} is not a folder of held-out sequences (GOT-10k layout)")
        if self.amp is not None and self.amp not in AMP_DTYPES:
            raise ConfigError(f"--amp must be one of {', '.join(AMP_DTYPES)}; got {self.amp!r}")
        for name in ("epochs", "batch_size", "samples_per_epoch", "val_interval"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}")

    def resolved_config(self) -> GrmConfig:
        """The config with this run's overrides applied to its training recipe."""
        cfg = get_config(self.config)
        overrides: dict[str, Any] = {}
        for name in ("epochs", "batch_size", "samples_per_epoch", "num_workers", "seed", "backbone_multiplier", "lr"):
            if getattr(self, name) is not None:
                overrides[name] = getattr(self, name)
        if "epochs" in overrides and overrides["epochs"] < cfg.train.lr_drop_epoch:
            # keep the official drop point relative to the run length (240/300, 80/100)
            overrides["lr_drop_epoch"] = max(1, round(overrides["epochs"] * cfg.train.lr_drop_epoch / cfg.train.epochs))
        return replace(cfg, train=replace(cfg.train, **overrides)) if overrides else cfg


@dataclass
class StepInfo:
    """What the progress callback gets after every iteration."""

    epoch: int
    iteration: int
    iterations: int
    stats: dict[str, float]
    samples_per_second: float


@dataclass(frozen=True)
class RunFiles:
    """What a run folder holds after training (rank 0 writes it), and what to do with it next.

    Attributes:
        checkpoints: the checkpoints folder.
        resumable: newest ``checkpoint_NNNN.pt`` (``--resume`` continues from it), if any.
        official: newest official-format ``GRM_epNNNN.pth.tar`` (what grm-export and grm-run load), if any.
        metrics: the JSON-lines metrics log.
        tensorboard: the TensorBoard event folder, when one was written.
    """

    checkpoints: Path
    resumable: Path | None
    official: Path | None
    metrics: Path
    tensorboard: Path | None

    @classmethod
    def of(cls, output: Path) -> RunFiles:
        folder = output / "checkpoints"
        official = sorted(folder.glob("GRM_ep*.pth.tar"), key=lambda p: (len(p.name), p.name))  # official_name()
        tensorboard = output / "tensorboard"
        return cls(
            folder,
            ckpt.latest_checkpoint(folder),
            official[-1] if official else None,
            output / "metrics.jsonl",
            tensorboard if tensorboard.is_dir() else None,
        )

    def written(self) -> list[tuple[Path, str]]:
        """The run's outputs with what they are, checkpoints first."""
        newest = [
            f"{p.name} {why}"
            for p, why in ((self.resumable, "for --resume"), (self.official, "in the official format"))
            if p is not None
        ]
        files = [(self.checkpoints, "checkpoints" + (f"; newest {', '.join(newest)}" if newest else ""))]
        if self.metrics.is_file():
            files.append((self.metrics, "metrics log, one JSON object per line"))
        if self.tensorboard is not None:
            files.append((self.tensorboard, "TensorBoard events"))
        return files

    def next_commands(self, config: str, val_root: Path | None) -> list[str]:
        """Score the newest checkpoint on held-out sequences, and export it (the official-format file first)."""
        newest = self.official or self.resumable
        if newest is None:
            return []
        held_out = shell_word(val_root) if val_root is not None else "VAL_ROOT"
        return [
            f"grm-train evaluate {shell_word(newest)} --val-root {held_out}",
            f"grm-export --config {config} --checkpoint {shell_word(newest)}",
        ]


@dataclass
class Callbacks:
    """Hooks for the CLI layer (progress bars); all optional."""

    on_epoch_start: Callable[[int, int], None] | None = None
    on_step: Callable[[StepInfo], None] | None = None
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None


class Trainer:
    """Builds model, data, optimiser and schedule for :class:`TrainOptions` and runs the epochs."""

    def __init__(
        self, options: TrainOptions, dist_info: DistInfo | None = None, callbacks: Callbacks | None = None
    ) -> None:
        from grm.train.model import build_model

        self.options = options
        self.dist = dist_info = dist_info or DistInfo()
        self.callbacks = callbacks or Callbacks()
        self.cfg = options.resolved_config()
        if self.iterations_per_epoch < 1:
            raise ConfigError(
                f"samples per epoch {self.cfg.train.samples_per_epoch} give no full batch of "
                f"{self.cfg.train.batch_size} per rank on {self.dist.world_size} ranks"
            )
        self.device = choose_device(dist_info, options.device)
        seed_everything(self.cfg.train.seed + dist_info.rank)
        self.output = Path(options.output)
        self.ckpt_dir = self.output / "checkpoints"
        self.model: nn.Module = build_model(self.cfg).to(self.device)
        if options.pretrained is not None:
            self._load_pretrained(options.pretrained)
        self.optimizer = build_optimizer(self.model, self.cfg.train)
        self.scheduler = build_scheduler(self.optimizer, self.cfg.train)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=options.amp == "fp16")
        self.start_epoch, self.start_step, self.resumed_sums = self._maybe_resume()
        self.net = self._wrap_ddp(self.model)
        datasets = build_datasets(self.cfg.train.datasets, options.roots)
        t = self.cfg.train
        self.sampler = PairSampler(
            datasets,
            t.dataset_ratios,
            Processing.from_config(self.cfg),
            t.samples_per_epoch,
            max_interval=t.max_sample_interval,
            seed=t.seed,
        )
        self.metrics = MetricsLog(self.output) if dist_info.is_main else None
        self.weights = LossWeights(focal=t.focal_weight, giou=t.giou_weight, l1=t.l1_weight)
        self.global_step = self.start_epoch * self.iterations_per_epoch + self.start_step
        self.watch = InterruptWatch(defer=True)  # replaced while fit() runs

    @property
    def iterations_per_epoch(self) -> int:
        per_rank = self.cfg.train.samples_per_epoch // self.dist.world_size
        return per_rank // self.cfg.train.batch_size

    def _load_pretrained(self, path: Path) -> None:
        from grm.train.checkpoint import load_state_strict, read_checkpoint
        from grm.train.pretrained import adapt_pretrained, whole_model_state

        data = read_checkpoint(path)
        whole = whole_model_state(data, path)
        if whole is not None:  # a GRM checkpoint: fine-tune every weight, box head included
            load_state_strict(self.model, whole, path)
            log.info("initialised the whole model from %s", path)
            return
        keys = list(self.model.state_dict())
        state, report = adapt_pretrained(data, self.cfg, model_keys=keys)
        result = self.model.load_state_dict(state, strict=False)
        if result.unexpected_keys:
            raise CheckpointError(f"{path}: adapted weights do not fit {self.cfg.name}: {result.unexpected_keys[:3]}")
        log.info("initialised the backbone from %s: %s", path, report.summary())

    def _maybe_resume(self) -> tuple[int, int, dict[str, float]]:
        """(completed epochs, iterations done in the next one, its running metric sums) to start from."""
        latest = ckpt.latest_checkpoint(self.ckpt_dir)
        if latest is None:
            if self.options.resume:
                log.warning("--resume: no checkpoint in %s; starting from epoch 1", self.ckpt_dir)
            return 0, 0, {}
        if not self.options.resume:
            raise CheckpointError(
                f"{self.ckpt_dir} already holds {latest.name}; pass --resume to continue that run "
                "or choose another --output"
            )
        data = ckpt.load_training_state(latest)
        ckpt.restore_training_state(
            data,
            model=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            config_name=self.cfg.name,
            scaler=self.scaler,
        )
        epoch, step, sums = ckpt.resume_point(data)
        # every rank continues its own stream: reseed the model's randomness from the saved rank-0 state + rank
        if self.dist.rank:
            torch.manual_seed(self.cfg.train.seed + self.dist.rank + 1000 * epoch + step)
        log.info("resumed from %s after epoch %d%s", latest, epoch, f" and {step} iterations" if step else "")
        return epoch, step, sums

    def _wrap_ddp(self, model: nn.Module) -> nn.Module:
        if not self.dist.enabled:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)

    def _loader(self, epoch: int, skip_iterations: int = 0) -> torch.utils.data.DataLoader:
        """This rank's batches of ``epoch``, leaving out the first ``skip_iterations`` (already trained)."""
        self.sampler.set_epoch(epoch)
        t = self.cfg.train
        workers = t.num_workers
        indices = RankIndices(
            t.samples_per_epoch, self.dist.rank, self.dist.world_size, skip=skip_iterations * t.batch_size
        )
        return torch.utils.data.DataLoader(
            self.sampler,
            batch_size=t.batch_size,
            sampler=indices,
            num_workers=workers,
            collate_fn=collate,
            drop_last=True,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(t.seed * 1000 + epoch),
            worker_init_fn=_worker_init,
            persistent_workers=False,
        )

    def fit(self) -> dict[str, float]:
        """Run the remaining epochs; returns the last epoch's averaged metrics.

        Ctrl-C (SIGINT, or the SIGTERM torchrun sends its ranks) finishes the current iteration, writes a
        checkpoint there and raises :class:`Interrupted` naming it; ``--resume`` continues from it exactly. A
        second Ctrl-C stops at once, keeping the newest checkpoint written before.
        """
        with InterruptWatch(defer=True, signals=(signal.SIGINT, signal.SIGTERM)) as self.watch:
            try:
                return self._fit()
            except KeyboardInterrupt as e:
                newest = ckpt.latest_checkpoint(self.ckpt_dir)
                kept = f"the newest checkpoint is {newest}" if newest else "no checkpoint was written"
                raise Interrupted(
                    f"stopped at once without saving; {kept}; continue with the same command and --resume"
                ) from e

    def run_files(self) -> RunFiles:
        """What the run folder holds now."""
        return RunFiles.of(self.output)

    def _fit(self) -> dict[str, float]:
        last: dict[str, float] = {}
        t = self.cfg.train
        log.info(
            "training %s on %s: epochs %d to %d, %d iterations of batch %d per epoch and rank; run folder %s",
            self.cfg.name,
            self.device,
            self.start_epoch + 1,
            t.epochs,
            self.iterations_per_epoch,
            t.batch_size,
            self.output,
        )
        for epoch in range(self.start_epoch + 1, self.cfg.train.epochs + 1):
            last = self.train_epoch(epoch)
            self.scheduler.step()
            saved = self._save(epoch, last) if self.dist.is_main else None
            if self._stop_requested():
                raise Interrupted(self._stop_note(saved, f"after epoch {epoch}"))
            if self.options.val_root is not None and (
                epoch % self.options.val_interval == 0 or epoch == self.cfg.train.epochs
            ):
                last.update(self._validate_or_stop(epoch, saved))
            barrier()
        if self.metrics is not None:
            self.metrics.close()
        return last

    def _stop_requested(self) -> bool:
        """Whether Ctrl-C was pressed on any rank (all ranks take part, so that they stop together)."""
        return any_rank(self.watch.requested, self.device)

    def _stop_note(self, saved: Path | None, where: str) -> str:
        if saved is None:  # ranks other than 0 write nothing
            return f"rank {self.dist.rank} stopped {where}"
        return f"saved {saved} {where}; continue with the same command and --resume"

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over this rank's share of the epoch; returns metrics averaged over iterations and ranks.

        A resumed epoch starts after the iterations its checkpoint recorded, with their metric sums.
        """
        self.net.train()
        iterations = self.iterations_per_epoch
        first = self.start_step if epoch == self.start_epoch + 1 else 0
        if self.callbacks.on_epoch_start:
            self.callbacks.on_epoch_start(epoch, iterations)
        sums: dict[str, float] = dict(self.resumed_sums) if first else {}
        start = time.perf_counter()
        for i, batch in enumerate(self._loader(epoch, first), start=first):
            stats = self.train_step(batch)
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v
            self.global_step += 1
            rate = (i + 1 - first) * self.cfg.train.batch_size * self.dist.world_size / (time.perf_counter() - start)
            if self.callbacks.on_step:
                self.callbacks.on_step(StepInfo(epoch, i + 1, iterations, stats, rate))
            if (
                self.metrics is not None
                and self.options.log_interval
                and self.global_step % self.options.log_interval == 0
            ):
                self.metrics.write("iter", self.global_step, {"epoch": epoch, **stats})
            if i + 1 < iterations and self._stop_requested():
                saved = self._save_step(epoch, i + 1, sums) if self.dist.is_main else None
                raise Interrupted(self._stop_note(saved, f"at epoch {epoch}, iteration {i + 1} of {iterations}"))
        means = {k: v / iterations for k, v in sums.items()}
        means["skipped"] = sums.get("skipped", 0.0)
        means = average_across_ranks(means, self.device)
        elapsed = time.perf_counter() - start
        means.update({f"lr_{name}": g["lr"] for name, g in zip(GROUP_NAMES, self.optimizer.param_groups, strict=True)})
        means.update(
            {
                "samples_per_second": (iterations - first) * self.cfg.train.batch_size * self.dist.world_size / elapsed,
                "epoch_seconds": elapsed,
            }
        )
        if self.metrics is not None:
            self.metrics.write("epoch", epoch, means)
        if self.callbacks.on_epoch_end:
            self.callbacks.on_epoch_end(epoch, means)
        return means

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        """Forward, loss, backward, clip, optimiser step on one batch; returns scalar stats."""
        dev = self.device
        template = torch.from_numpy(batch["template"]).to(dev, non_blocking=True)
        search = torch.from_numpy(batch["search"]).to(dev, non_blocking=True)
        anno = torch.from_numpy(batch["search_anno"]).to(dev)
        label = torch.from_numpy(batch["heatmap"]).to(dev)
        autocast = torch.autocast(dev.type, dtype=AMP_DTYPES[self.options.amp]) if self.options.amp else nullcontext()
        self.optimizer.zero_grad(set_to_none=True)
        with autocast:
            out = self.net(template, search)
        loss, stats = tracking_loss(out.pred_boxes, out.score_map, anno, label, self.weights)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        stats["grad_norm"] = clip_gradients(self.model, self.cfg.train.grad_clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if out.decisions is not None:
            stats["cross_fraction"] = float(out.decisions.detach().float().mean())
        stats["skipped"] = float(batch["skipped"].sum())
        return stats

    def _save(self, epoch: int, metrics: dict[str, float]) -> Path:
        path = ckpt.save_training_state(
            self.ckpt_dir,
            model=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            epoch=epoch,
            config_name=self.cfg.name,
            scaler=self.scaler,
            metrics=metrics,
            keep=self.options.keep,
        )
        if ckpt.save_official_now(epoch, self.cfg.train.epochs):
            ckpt.save_official(self.ckpt_dir / ckpt.official_name(epoch), self.model, epoch)
        return path

    def _save_step(self, epoch: int, step: int, sums: dict[str, float]) -> Path:
        """The checkpoint inside ``epoch`` after ``step`` iterations (Ctrl-C), with the epoch's running sums."""
        return ckpt.save_training_state(
            self.ckpt_dir,
            model=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            epoch=epoch - 1,
            step=step,
            epoch_sums=sums,
            config_name=self.cfg.name,
            scaler=self.scaler,
            keep=self.options.keep,
        )

    def _validate_or_stop(self, epoch: int, saved: Path | None) -> dict[str, float]:
        """Validation, which Ctrl-C stops at once: the epoch's checkpoint is already written."""
        self.watch.defer = False
        try:
            return self._validate(epoch)
        except KeyboardInterrupt as e:
            raise Interrupted(self._stop_note(saved, f"after epoch {epoch} (its validation was cut short)")) from e
        finally:
            self.watch.defer = True

    def _validate(self, epoch: int) -> dict[str, float]:
        if not self.dist.is_main:
            return {}
        from grm.train.validation import validate

        log.info("epoch %d: validating on %s", epoch, self.options.val_root)
        with torch.random.fork_rng(devices=[]):
            result = validate(self.model, self.options.val_root, self.options.val_sequences, device=str(self.device))
        values = {"val_auc": result.auc, "val_static_auc": result.static_auc, "val_sequences": result.sequences}
        if self.metrics is not None:
            self.metrics.write("val", epoch, values)
        log.info(
            "epoch %d validation: AUC %.2f (static box %.2f) on %d sequences",
            epoch,
            result.auc,
            result.static_auc,
            result.sequences,
        )
        return values


def _worker_init(worker_id: int) -> None:
    import cv2

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle: it stops the workers
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
