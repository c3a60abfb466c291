"""Training the bundled Fashion-MNIST ViT: AdamW, linear warm-up then cosine decay, light augmentation.

Every epoch writes a full checkpoint (model, optimiser, scheduler, RNG states) atomically, so a
killed run continues with ``--resume`` exactly where it stopped.
"""

from __future__ import annotations

import io
import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch.utils.data import DataLoader

from paretoctl.models.data import load_fmnist
from paretoctl.models.vit_fmnist import VIT_FMNIST_NAME
from paretoctl.service.fileio import atomic_write_bytes


@dataclass
class TrainConfig:
    """Hyper-parameters of a training run; every field can be set from YAML."""

    model: str = VIT_FMNIST_NAME
    data_root: str | None = None
    val_size: int = 5000
    split_seed: int = 0
    seed: int = 0
    epochs: int = 14
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    max_shift: int = 2
    hflip: bool = True
    num_threads: int | None = None
    out_dir: str = "runs/train_fmnist"
    export_path: str = "models/weights/vit_fmnist_patch4_28.safetensors"
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        raw = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        unknown = sorted(set(raw) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"{path}: unknown training config keys {unknown}")
        cfg = cls(**raw)
        if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.lr <= 0:
            raise ValueError(f"{path}: epochs, batch_size and lr must be positive")
        return cfg


def augment(x: torch.Tensor, max_shift: int, hflip: bool, gen: torch.Generator) -> torch.Tensor:
    """Random translation by up to ``max_shift`` pixels (zero = background after padding) and h-flip."""
    b, _, h, w = x.shape
    if max_shift > 0:
        bg = float(x.min())
        padded = F.pad(x, (max_shift,) * 4, value=bg)
        dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
        dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
        rows = (dy[:, None] + torch.arange(h)[None]).view(b, 1, h, 1).expand(b, x.shape[1], h, w + 2 * max_shift)
        cols = (dx[:, None] + torch.arange(w)[None]).view(b, 1, 1, w).expand(b, x.shape[1], h, w)
        x = padded.gather(2, rows).gather(3, cols)
    if hflip:
        flip = torch.rand(b, generator=gen) < 0.5
        x = torch.where(flip.view(b, 1, 1, 1), x.flip(-1), x)
    return x


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def evaluate_accuracy(model: torch.nn.Module, loader: DataLoader) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` over ``loader``."""
    model.eval()
    correct = total = 0
    for x, y in loader:
        correct += int((model(x).argmax(-1) == y).sum())
        total += len(y)
    return correct / max(1, total)


def _atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` through the project's one durable writer (a kill never leaves half a checkpoint)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train, checkpointing each epoch; returns the model-card facts (accuracies, wall time, ...)."""
    import timm
    from tqdm import tqdm

    import paretoctl.models.vit_fmnist  # noqa: F401  (registers the model with timm)
    from paretoctl.models.checkpoint import export_safetensors

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "last.ckpt"
    torch.manual_seed(cfg.seed)
    data = load_fmnist(cfg.data_root, cfg.val_size, cfg.split_seed)
    model = timm.create_model(cfg.model, **cfg.model_kwargs)
    steps_per_epoch = math.ceil(len(data.train) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "pos_embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "pos_embed" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
    )
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total_steps, warmup))
    gen = torch.Generator().manual_seed(cfg.seed)
    start_epoch, history, wall = 0, [], 0.0
    if resume and ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        gen.set_state(state["gen"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, history, wall = state["epoch"], state["history"], state["wall_s"]
        print(f"resumed from {ckpt_path} after epoch {start_epoch}", flush=True)
    elif resume:
        print(f"no checkpoint at {ckpt_path}; starting from scratch", flush=True)
    val_loader = DataLoader(data.val, batch_size=512)
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        model.train()
        loader = DataLoader(data.train, batch_size=cfg.batch_size, shuffle=True, generator=gen, drop_last=False)
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress, mininterval=5.0)
        running = 0.0
        for i, (x, y) in enumerate(bar):
            x = augment(x, cfg.max_shift, cfg.hflip, gen)
            loss = F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            running += float(loss)
            if i % 20 == 0:
                bar.set_postfix(loss=f"{running / (i + 1):.3f}", lr=f"{sched.get_last_lr()[0]:.2e}")
        val_acc = evaluate_accuracy(model, val_loader)
        wall += time.time() - t0
        history.append({"epoch": epoch + 1, "train_loss": running / steps_per_epoch, "val_acc": val_acc})
        print(json.dumps(history[-1]), flush=True)
        _atomic_save(
            {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
             "gen": gen.get_state(), "torch_rng": torch.get_rng_state(), "epoch": epoch + 1,
             "history": history, "wall_s": wall, "config": asdict(cfg)},
            ckpt_path,
        )
    test_acc = evaluate_accuracy(model, DataLoader(data.test, batch_size=512))
    facts = {
        "model": cfg.model, "epochs": cfg.epochs, "wall_time_s": round(wall, 1),
        "val_acc": history[-1]["val_acc"] if history else None, "test_acc": test_acc,
        "val_size": cfg.val_size, "split_seed": cfg.split_seed, "seed": cfg.seed,
        "torch": torch.__version__, "machine": f"{platform.machine()} x{torch.get_num_threads()} threads (CPU)",
        "history": history, "config": asdict(cfg),
    }
    export_safetensors(model, Path(cfg.export_path), facts)
    print(json.dumps({k: v for k, v in facts.items() if k not in ("history", "config")}), flush=True)
    return facts
