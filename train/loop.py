"""The training loop: seeded, resumable, with a progress bar and a loss-curve plot.

Everything a run needs to continue lives in ``<out>/train_state.pt`` (model, optimiser, data
generator, torch RNG, loss history, wall time), written atomically every ``checkpoint_every``
steps and at the end; with ``resume`` a run starts from it and, on one thread, finishes with
exactly the weights an uninterrupted run would have. The packed checkpoint (config.json,
model.safetensors, tokenizer.json), ``train.json`` (what was run, how long, final loss) and
``loss.png`` are rewritten at every checkpoint, so an interrupted run leaves a usable model.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..golden.checks import InputError
from ..golden.files import atomic_write
from .config import TrainConfig
from .export import export
from .model import BitNet

STATE = "train_state.pt"


@dataclass
class TrainResult:
    out: Path
    steps: int
    final_loss: float
    seconds: float
    model: BitNet


StepCallback = Callable[[int, float], None]


def plot_losses(losses: list[float], path: Path, title: str) -> None:
    """loss.png: the per-step loss and its running mean, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, lw=0.5, alpha=0.4, label="loss")
    w = max(1, len(losses) // 50)
    if len(losses) >= w:
        smooth = np.convolve(losses, np.ones(w) / w, mode="valid")
        ax.plot(steps[w - 1:], smooth, lw=1.5, label=f"mean of {w}")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats)")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100))
    finally:
        plt.close(fig)


def _load_state(path: Path, cfg: TrainConfig) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise InputError(f"--resume: {path} does not exist; start without --resume") from None
    except Exception as e:
        raise InputError(f"--resume: cannot read {path} ({type(e).__name__}: {e})") from None
    saved = state.get("config", {}) if isinstance(state, dict) else {}
    for f in fields(TrainConfig):
        if f.name != "steps" and saved.get(f.name) != getattr(cfg, f.name):
            raise InputError(f"--resume: {path} was trained with {f.name}="
                             f"{saved.get(f.name)!r}, not {getattr(cfg, f.name)!r}")
    if state["step"] > cfg.steps:
        raise InputError(f"--resume: {path} is already at step {state['step']}, beyond "
                         f"--steps {cfg.steps}")
    return state


def train(cfg: TrainConfig, out: str | Path, *, resume: bool = False, progress: bool = True,
          on_step: StepCallback | None = None, command: str | None = None) -> TrainResult:
    """Train (or continue training) into the folder out; returns the trained model.

    on_step(step, loss) is called after each optimiser step (step counts from 1).
    """
    from tqdm import tqdm

    cfg.check()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a directory")
    state_path = out / STATE
    if not resume and state_path.exists():
        raise InputError(f"--out {out} already holds a run ({STATE}); pass --resume to "
                         "continue it or choose another folder")
    task = cfg.make_task()
    mcfg = cfg.model_config(task)
    out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(cfg.seed)
    model = BitNet(mcfg)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.lr, betas=(0.9, 0.95))
    rng = np.random.default_rng(cfg.seed)
    step, losses, seconds = 0, [], 0.0
    if resume:
        state = _load_state(state_path, cfg)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["data_rng"]
        torch.set_rng_state(state["torch_rng"])
        step, losses, seconds = state["step"], list(state["losses"]), state["seconds"]

    def save() -> None:
        state = {"config": asdict(cfg), "step": step, "model": model.state_dict(),
                 "optimizer": opt.state_dict(), "data_rng": rng.bit_generator.state,
                 "torch_rng": torch.get_rng_state(), "losses": losses, "seconds": seconds}
        atomic_write(state_path, lambda tmp: torch.save(state, tmp))
        export(model, task.tokenizer, out)
        meta = {"task": task.name, "config": asdict(cfg), "model": mcfg.to_dict(),
                "step": step, "final_loss": losses[-1] if losses else None,
                "wall_seconds": round(seconds, 1), "torch_threads": torch.get_num_threads()}
        if command:
            meta["command"] = command
        atomic_write(out / "train.json", [json.dumps(meta, indent=2).encode()])
        if losses:
            plot_losses(losses, out / "loss.png", f"{task.name}: {step} steps")

    model.train()
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, desc="train",
               dynamic_ncols=True)
    try:
        while step < cfg.steps:
            t0 = time.perf_counter()
            x, y = task.batch(rng, cfg.batch)
            for g in opt.param_groups:
                g["lr"] = cfg.lr_at(step)
            logits = model(torch.from_numpy(x))
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                   torch.from_numpy(y).reshape(-1), ignore_index=-100)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            value = float(loss.item())
            if not math.isfinite(value):
                raise InputError(f"the loss became {value} at step {step}; lower --lr "
                                 f"(now {cfg.lr})")
            losses.append(value)
            seconds += time.perf_counter() - t0
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}", refresh=False)
            if on_step:
                on_step(step, value)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                save()
    finally:
        bar.close()
    model.eval()
    return TrainResult(out, step, losses[-1] if losses else math.nan, seconds, model)
