"""The trainer: Adam + Noam warm-up, accumulation, clipping, length-bucketed batches,
per-epoch validation, best-N checkpoints and averaging, early stopping, exact resume,
DDP (``torchrun``) and AMP (CUDA), and training-method plug-ins (:mod:`avsr.method`).

Documented behaviours
---------------------
* **Schedule** (:class:`WarmupLR`, ESPnet's ``WarmupLR``): at optimiser update ``s``
  (1-based) the learning rate is ``lr * warmup**0.5 * min(s**-0.5, s * warmup**-1.5)`` -
  linear warm-up to ``lr`` at ``s = warmup``, then ``lr * sqrt(warmup / s)``.
  ``warmup_steps <= 0``: constant ``lr``.  The scheduler steps after every update.
* **Steps**: ``trainer.step`` counts optimiser updates; one update every ``accum_grad``
  batches.  Each micro-batch's loss is divided by the size of its accumulation group, so
  ``accum_grad`` batches of ``n`` give the gradient of one batch of ``accum_grad * n`` (for
  losses that are batch means and equal batch sizes).  The last group of an epoch may be
  smaller; it is still applied (no gradient is carried over an epoch end).
* **Clipping**: ``grad_clip > 0`` clips the total L2 norm (``clip_grad_norm_``); the norm
  before clipping is logged as ``grad_norm``.  A non-finite norm skips the update.
* **Batches**: :class:`~avsr.data.sampler.LengthBatchSampler` over the lengths of the
  dataset (``dataset.num_frames(i)``, else ``dataset.lengths``, else 1 per item) with
  ``batch_bins`` / ``batch_size``; shuffled with ``seed`` per epoch; sharded over DDP ranks.
* **Epochs** are numbered from 1.  After each epoch: validation on ``valid_set`` (``loss``,
  ``acc`` and the other ``out.stats``, mean over utterances; ``cer`` when a ``cer_fn`` is
  given; averaged over DDP ranks), a model snapshot ``epoch{N}.pth``, the best-``best_n``
  list by ``metric`` (``metric_mode`` ``"auto"``: ``max`` for ``acc``, ``min`` otherwise;
  ties keep the earlier epoch), snapshots that leave the list are deleted, and the full
  training state ``checkpoint.pth``.  Early stop when the metric has not improved for
  ``patience`` epochs.  At the end, the best-N snapshots are averaged into
  ``valid.{metric}.ave_{N}best.pth`` (plus ``valid.{metric}.best.pth`` = the best one).
  There is no evaluation set here: nothing is chosen on eval data.
* **Resume** (``resume=True``, default): when ``exp_dir/checkpoint.pth`` exists,
  ``fit()`` restores model, optimiser, scheduler, grad scaler, python/numpy/torch RNG
  states (per rank), epoch, sampler position (batches consumed in the epoch), method
  states (per rank), the methods' registered trainable modules (``register_trainable``: in
  ``checkpoint.pth`` only, never in the model snapshots), best-N list, early-stop counter, step
  counters and history, and
  continues exactly where the checkpoint was taken.  ``checkpoint.pth`` is written every
  ``save_every_steps`` updates (mid-epoch) and at each epoch end, atomically, by rank 0.
  Checkpoints are loaded with ``weights_only=True`` only.
* **Determinism**: ``seed`` seeds python/numpy/torch at construction (``seed + rank``
  under DDP); DataLoaders get their own generator seeded from ``(seed, epoch, rank)`` so
  creating them draws nothing from the global RNG.
* **DDP**: under ``torchrun`` (``WORLD_SIZE > 1``) or when a process group is already
  initialised, the model is wrapped in ``DistributedDataParallel`` (backend ``nccl`` on
  CUDA, ``gloo`` on CPU); only rank 0 writes checkpoints, logs to file, TensorBoard and
  progress bars.  **AMP**: ``amp=True`` on CUDA uses ``torch.autocast`` (``amp_dtype``)
  and a ``GradScaler`` (float16 only); it is off on CPU.
* **Logs**: logger ``avsr.trainer`` to ``exp_dir/train.log`` and the console (a console
  handler is added only when neither this logger nor the root logger has one); a line every
  ``log_interval`` updates with the means since the previous line (``loss`` = total,
  ``loss_model`` = the model's own loss, the model's ``stats``, each extra loss, each method's
  extra stats (``extra_stats``: diagnostics that are not added to the loss), ``lr``, ``grad_norm``); ``tqdm`` bars (``progress``, and only when stderr is a terminal: a piped
  or redirected log, as in the recipes' stage logs, gets the log lines alone); TensorBoard under ``exp_dir/tensorboard``
  when ``tensorboard`` is set and installed (imported lazily, skipped with a warning
  otherwise).  ``history`` (in checkpoints and :class:`FitResult`) holds per-epoch train
  means (for an epoch resumed mid-way: of the batches after the resume) and valid stats.
* **Validation under DDP**: each rank validates its shard (the sampler pads the batch list
  to a multiple of the world size by repeating up to ``world_size - 1`` batches) and the
  utterance-weighted sums are combined over ranks, so every rank takes the same decisions.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from avsr.data.sampler import LengthBatchSampler
from avsr.method import TrainingMethod
from avsr.trainer.rng import rng_state, set_rng_state
from avsr.utils.checkpoint import (CheckpointError, average_checkpoints, init_specs, load_checkpoint,
                                   load_partial, save_checkpoint)

__all__ = ["TrainerConfig", "Trainer", "WarmupLR", "noam_lr", "FitResult"]

logger = logging.getLogger("avsr.trainer")

CKPT_NAME = "checkpoint.pth"
CKPT_FORMAT = "avsr-trainer-1"


# ============================================================================ config
def _is_terminal(stream) -> bool:
    """Whether ``stream`` is an interactive terminal (progress bars redraw there; in a log file
    or a pipe each redraw would be kept as text)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


@dataclass
class TrainerConfig:
    # optimisation
    optim: str = "adam"              # adam | adamw | sgd
    lr: float = 1e-3
    betas: Tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-9
    weight_decay: float = 0.0
    warmup_steps: int = 25000
    accum_grad: int = 1
    grad_clip: float = 5.0           # <= 0: no clipping
    max_epochs: int = 100
    max_steps: int = 0               # > 0: stop after this many optimiser updates (that epoch ends there)
    # batches
    batch_bins: Optional[float] = None
    batch_size: Optional[int] = 32
    valid_batch_bins: Optional[float] = None   # None: same as training
    valid_batch_size: Optional[int] = None
    shuffle: bool = True
    num_workers: int = 0
    pin_memory: bool = False
    seed: int = 0
    deterministic: bool = False      # torch.use_deterministic_algorithms (warn_only) + cudnn
    # selection / stopping
    best_n: int = 10
    metric: str = "acc"
    metric_mode: str = "auto"        # auto | max | min
    patience: Optional[int] = None   # None / 0: no early stop
    keep_all_epochs: bool = False
    # checkpoints / logs
    save_every_steps: int = 0        # 0: only at epoch ends
    resume: bool = True
    init: Optional[Union[str, Sequence[str]]] = None  # --init: partial load(s) before training;
    #   each spec is "PATH" or "PATH::PREFIX[,PREFIX...]" (only tensors with those name prefixes);
    #   later specs overwrite what earlier ones filled (e.g. A0 everything, then V's "visual_")
    init_ignore: Tuple[str, ...] = ()
    freeze_param: Tuple[str, ...] = ()  # ESPnet's --freeze_param: parameter name prefixes never
    #   trained (requires_grad off, not in the optimiser; BatchNorm layers whose parameters are all
    #   frozen stay in eval mode so their running statistics do not move either)
    log_interval: int = 50
    progress: bool = True            # tqdm bars, on a terminal only (never in a piped log)
    tensorboard: bool = False
    # scale-out
    amp: bool = False
    amp_dtype: str = "float16"       # float16 | bfloat16
    device: str = "auto"             # auto | cpu | cuda | cuda:N
    ddp_backend: Optional[str] = None   # None: nccl on CUDA, gloo on CPU
    find_unused_parameters: bool = False

    @classmethod
    def from_dict(cls, d: Optional[Mapping[str, Any]]) -> "TrainerConfig":
        """From the ``trainer:`` section of a YAML config (or a dict holding that section)."""
        d = dict(d or {})
        if "trainer" in d and isinstance(d["trainer"], Mapping):
            d = dict(d["trainer"])
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown trainer option(s): {', '.join(unknown)}")
        if isinstance(d.get("init"), (list, tuple)):
            d["init"] = tuple(d["init"]) if len(d["init"]) > 1 else (d["init"][0] if d["init"] else None)
        for k in ("betas", "init_ignore", "freeze_param"):
            if k in d and d[k] is not None:
                d[k] = tuple(d[k])
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: Union[str, os.PathLike]) -> "TrainerConfig":
        import yaml
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(yaml.safe_load(f) or {})

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


# ============================================================================ schedule
def _crossed(before: int, after: int, every) -> bool:
    """Whether the optimiser step count passed a multiple of ``every`` going from ``before`` to
    ``after`` (one batch may make more than one update, e.g. MLA's two; with one update per batch this
    is ``after % every == 0``)."""
    k = max(int(every), 1)
    return after // k > before // k


def noam_lr(step: int, lr: float, warmup_steps: int) -> float:
    """``lr * warmup**0.5 * min(step**-0.5, step * warmup**-1.5)`` (``step`` >= 1)."""
    if warmup_steps <= 0:
        return float(lr)
    s = max(int(step), 1)
    return float(lr) * warmup_steps ** 0.5 * min(s ** -0.5, s * warmup_steps ** -1.5)


class WarmupLR(torch.optim.lr_scheduler.LRScheduler):
    """ESPnet's WarmupLR (Noam); the lr of update ``s`` is :func:`noam_lr` ``(s, base_lr, warmup)``."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int = 25000, last_epoch: int = -1):
        self.warmup_steps = int(warmup_steps)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> List[float]:
        s = self.last_epoch + 1
        return [noam_lr(s, base, self.warmup_steps) for base in self.base_lrs]


# ============================================================================ helpers
@dataclass
class FitResult:
    best: List[Tuple[float, int]]          # (metric value, epoch), best first
    averaged: Optional[str]                # path of the averaged model (rank 0), or None
    best_path: Optional[str]
    epochs_run: int
    stopped_early: bool
    history: List[Dict[str, Any]] = field(default_factory=list)


def _out_stats(out: Any) -> Dict[str, float]:
    st = getattr(out, "stats", None)
    if callable(st):
        st = st()
    d: Dict[str, float] = {}
    if isinstance(st, Mapping):
        for k, v in st.items():
            if v is None:
                continue
            d[k] = float(v.detach()) if isinstance(v, torch.Tensor) else float(v)
    else:
        for k in ("loss_ctc", "loss_att", "acc"):
            v = getattr(out, k, None)
            if v is not None:
                d[k] = float(v.detach()) if isinstance(v, torch.Tensor) else float(v)
    return d


def _dataset_lengths(ds) -> List[float]:
    if hasattr(ds, "num_frames"):
        return [float(ds.num_frames(i)) for i in range(len(ds))]
    if hasattr(ds, "lengths"):
        return [float(x) for x in ds.lengths]
    return [1.0] * len(ds)


def _default_collate():
    from avsr.data.dataset import collate
    return collate


class _Avg:
    """Weighted running means of stats."""

    def __init__(self):
        self.s: Dict[str, float] = {}
        self.n: Dict[str, float] = {}

    def add(self, stats: Mapping[str, float], w: float = 1.0):
        for k, v in stats.items():
            if v is None or not math.isfinite(float(v)):
                continue
            self.s[k] = self.s.get(k, 0.0) + float(v) * w
            self.n[k] = self.n.get(k, 0.0) + w

    def means(self) -> Dict[str, float]:
        return {k: self.s[k] / self.n[k] for k in self.s if self.n[k] > 0}


# ============================================================================ trainer
class Trainer:
    """See the module docstring.

    ``model``: an ``nn.Module`` with ``model(batch, **kw) -> out`` (``out.loss``,
    ``out.taps``, optional ``out.stats``).  ``train_set`` / ``valid_set``: map-style datasets
    whose items ``collate_fn`` (default :func:`avsr.data.dataset.collate`) turns into a
    :class:`~avsr.data.batch.Batch`.  ``methods``: training methods (applied in order).
    ``cer_fn(model, batch, out) -> (errors, reference_length)``: optional validation hook
    reported as ``cer``.
    """

    def __init__(self, model: nn.Module, train_set, valid_set, config: Optional[TrainerConfig] = None,
                 methods: Sequence[TrainingMethod] = (), exp_dir: Union[str, os.PathLike] = "exp",
                 *, collate_fn: Optional[Callable] = None,
                 cer_fn: Optional[Callable[[nn.Module, Any, Any], Tuple[float, float]]] = None):
        self.config = config = config or TrainerConfig()
        if int(config.accum_grad) < 1:
            raise ValueError(f"accum_grad must be >= 1, got {config.accum_grad}")
        if config.metric_mode not in ("auto", "max", "min"):
            raise ValueError(f"metric_mode must be auto/max/min, got {config.metric_mode!r}")
        self.exp_dir = os.fspath(exp_dir)
        self.train_set = train_set
        self.valid_set = valid_set
        self.collate_fn = collate_fn or _default_collate()
        self.cer_fn = cer_fn
        self.methods: List[TrainingMethod] = list(methods)
        owners = [m for m in self.methods if m.overrides_train_step()]
        if len(owners) > 1:
            raise ValueError("at most one training method may override train_step, got "
                             + ", ".join(m.method_name() for m in owners))
        self._step_owner = owners[0] if owners else None

        # ---- distributed / device
        self._init_distributed()
        self.device = self._pick_device()
        self.is_main = self.rank == 0
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.use_amp = bool(config.amp) and self.device.type == "cuda"
        self.amp_dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16}[config.amp_dtype]

        # ---- seeds
        self._seed_everything(int(config.seed) + self.rank)
        if config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False

        # ---- model, init, methods
        self.model = model.to(self.device)
        self.init_result = None
        if config.init:
            self.init_result = None
            for spec in init_specs(config.init):
                r = load_partial(self.model, spec[0], ignore=config.init_ignore, include=spec[1], log=logger)
                self.init_result = r if self.init_result is None else self.init_result.merge(r)
        self.frozen: Dict[str, nn.Module] = {}
        self.trainables: Dict[str, nn.Module] = {}
        self.optimizer = None
        self._hooks: List[Any] = []
        self._freeze_params(config.freeze_param)
        for m in self.methods:
            m.setup(self)
        self.frozen_bn = self._frozen_batchnorm()

        # ---- optimiser, scheduler, scaler
        params = [p for p in self.model.parameters() if p.requires_grad]
        frozen_ids = {id(p) for fm in self.frozen.values() for p in fm.parameters()}
        params = [p for p in params if id(p) not in frozen_ids]
        self.trainable_params = [p for tm in self.trainables.values() for p in tm.parameters() if p.requires_grad]
        params = params + self.trainable_params       # after the model's, in registration order
        self.params = params
        self.optimizer = self._make_optimizer(params)
        self.scheduler = WarmupLR(self.optimizer, config.warmup_steps)
        self.scaler = torch.amp.GradScaler("cuda") if (self.use_amp and self.amp_dtype == torch.float16) else None

        # ---- DDP
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP
            kw = {"device_ids": [self.device.index]} if self.device.type == "cuda" else {}
            self.ddp_model: nn.Module = DDP(self.model, find_unused_parameters=config.find_unused_parameters, **kw)
            import torch.distributed as dist
            for tm in self.trainables.values():      # DDP broadcasts the model's; the methods' modules too
                for t in list(tm.parameters()) + list(tm.buffers()):
                    dist.broadcast(t.data, 0)
        else:
            self.ddp_model = self.model

        # ---- samplers
        self.train_sampler = LengthBatchSampler(
            _dataset_lengths(train_set), batch_bins=config.batch_bins, batch_size=config.batch_size,
            shuffle=config.shuffle, seed=config.seed, num_replicas=self.world_size, rank=self.rank)
        vb = config.valid_batch_bins if config.valid_batch_bins is not None else config.batch_bins
        vs = config.valid_batch_size if config.valid_batch_size is not None else config.batch_size
        self.valid_sampler = None if valid_set is None else LengthBatchSampler(
            _dataset_lengths(valid_set), batch_bins=vb, batch_size=vs, shuffle=False,
            num_replicas=self.world_size, rank=self.rank)

        # ---- state
        self.step = 0                 # optimiser updates
        self.micro_step = 0           # batches consumed
        self.epoch = 1
        self.epoch_done = False       # the current ``epoch`` is complete (validated, saved)
        self.batches_in_epoch = 0
        self.best: List[Tuple[float, int]] = []
        self.bad_epochs = 0
        self.stopped_early = False
        self.history: List[Dict[str, Any]] = []
        self.is_update_step = True
        self.accum_scale = 1
        self._tb = None
        self._log_handlers: List[logging.Handler] = []

    # ------------------------------------------------------------------ setup helpers
    def _init_distributed(self) -> None:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            self.world_size, self.rank = dist.get_world_size(), dist.get_rank()
        elif int(os.environ.get("WORLD_SIZE", "1")) > 1:
            backend = self.config.ddp_backend or ("nccl" if torch.cuda.is_available() else "gloo")
            dist.init_process_group(backend=backend)
            self.world_size, self.rank = dist.get_world_size(), dist.get_rank()
        else:
            self.world_size, self.rank = 1, 0
        self.local_rank = int(os.environ.get("LOCAL_RANK", self.rank))

    def _pick_device(self) -> torch.device:
        d = self.config.device
        if d == "auto":
            d = "cuda" if torch.cuda.is_available() else "cpu"
        dev = torch.device(d)
        if dev.type == "cuda" and dev.index is None:
            n = torch.cuda.device_count()
            dev = torch.device("cuda", self.local_rank % max(n, 1))
        return dev

    @staticmethod
    def _seed_everything(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed % 2 ** 32)
        torch.manual_seed(seed)

    def _make_optimizer(self, params) -> torch.optim.Optimizer:
        c = self.config
        if c.optim == "adam":
            return torch.optim.Adam(params, lr=c.lr, betas=tuple(c.betas), eps=c.eps, weight_decay=c.weight_decay)
        if c.optim == "adamw":
            return torch.optim.AdamW(params, lr=c.lr, betas=tuple(c.betas), eps=c.eps, weight_decay=c.weight_decay)
        if c.optim == "sgd":
            return torch.optim.SGD(params, lr=c.lr, weight_decay=c.weight_decay)
        raise ValueError(f"unknown optim {c.optim!r} (adam, adamw, sgd)")

    def _freeze_params(self, prefixes: Sequence[str]) -> None:
        """``trainer.freeze_param``: turn off the gradients of parameters whose names start with a prefix."""
        if not prefixes:
            return
        names = [n for n, _ in self.model.named_parameters()]
        unknown = [x for x in prefixes if not any(n.startswith(x) for n in names)]
        if unknown:
            top = sorted({n.split(".")[0] for n in names})
            raise ValueError(f"freeze_param: no parameter starts with {unknown} (top-level modules: {top})")
        n_frozen = 0
        for n, p in self.model.named_parameters():
            if n.startswith(tuple(prefixes)):
                p.requires_grad_(False)
                n_frozen += p.numel()
        if not any(p.requires_grad for p in self.model.parameters()):
            raise ValueError(f"freeze_param {list(prefixes)} freezes every parameter of the model")
        if self.rank == 0:
            logger.info("freeze_param %s: %d parameters frozen", list(prefixes), n_frozen)

    def _frozen_batchnorm(self) -> List[nn.Module]:
        """BatchNorm layers whose affine parameters are all frozen (by ``freeze_param`` or a method's
        ``setup``, e.g. MS-Adapter's frozen base): kept in eval mode in training, so their running
        statistics do not move either."""
        bns = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
               and any(True for _ in m.parameters(recurse=False))
               and not any(p.requires_grad for p in m.parameters(recurse=False))]
        if bns and self.rank == 0:
            logger.info("%d BatchNorm layer(s) with frozen parameters kept in eval mode", len(bns))
        return bns

    def _train_mode(self) -> None:
        """The model in training mode, except the frozen parts (auxiliary models, frozen BatchNorm)."""
        self.model.train()
        for tm in self.trainables.values():
            tm.train()
        for fm in self.frozen.values():
            fm.eval()
        for m in self.frozen_bn:
            m.eval()

    # ------------------------------------------------------------------ plug-in services
    def register_frozen(self, name: str, module: nn.Module) -> nn.Module:
        """Register a frozen auxiliary model (e.g. a teacher): moved to the device, ``eval()``,
        no gradients, never optimised, never saved in checkpoints.  Returns the module."""
        if name in self.frozen:
            raise ValueError(f"frozen module {name!r} already registered")
        if any(module is m for m in self.model.modules()):
            raise ValueError(f"frozen module {name!r} is part of the trained model")
        module = module.to(self.device)
        module.eval()
        module.requires_grad_(False)
        self.frozen[name] = module
        if getattr(self, "optimizer", None) is not None:
            ids = {id(p) for p in module.parameters()}
            for g in self.optimizer.param_groups:
                if any(id(p) in ids for p in g["params"]):
                    raise ValueError(f"frozen module {name!r} shares parameters with the optimiser")
        return module

    def register_trainable(self, name: str, module: nn.Module) -> nn.Module:
        """Register an extra trainable module of a method (e.g. an auxiliary head) that is not part of
        the model: moved to the device, its parameters optimised (after the model's, in the same
        parameter group: same learning rate, schedule and clipping), its gradients averaged over DDP
        ranks at every update, ``train()`` / ``eval()`` with the model, and its weights saved in the
        training state ``checkpoint.pth`` (restored on resume) but **never** in the model files
        (``epoch<N>.pth``, the averaged ``model.pth``, packs).  Only from a method's ``setup`` (before
        the optimiser is built).  Returns the module."""
        if getattr(self, "optimizer", None) is not None:
            raise RuntimeError(f"register_trainable({name!r}): only from a method's setup (the optimiser "
                               "is already built)")
        if name in self.trainables or name in self.frozen:
            raise ValueError(f"module {name!r} already registered")
        if any(module is m for m in self.model.modules()):
            raise ValueError(f"trainable module {name!r} is part of the model (it would be saved with it)")
        ids = {id(p) for p in self.model.parameters()}
        ids |= {id(p) for tm in self.trainables.values() for p in tm.parameters()}
        if any(id(p) in ids for p in module.parameters()):
            raise ValueError(f"trainable module {name!r} shares parameters with the model or another module")
        if not any(p.requires_grad for p in module.parameters()):
            raise ValueError(f"trainable module {name!r} has no trainable parameters")
        module = module.to(self.device)
        module.train(self.model.training)
        self.trainables[name] = module
        return module

    def register_grad_hook(self, module_name: str, fn: Callable, kind: str = "param"):
        """Hook the gradients of ``model.get_submodule(module_name)``.

        ``kind="param"``: ``fn(param_name, grad) -> new grad or None`` on each of its parameters
        (``param_name`` relative to the model).  ``kind="output"``: ``fn(module, grad_input,
        grad_output)`` as a full backward hook.  Returns the list of handles."""
        mod = self.model.get_submodule(module_name) if module_name else self.model
        handles = []
        if kind == "param":
            prefix = f"{module_name}." if module_name else ""
            for n, p in mod.named_parameters():
                if p.requires_grad:
                    handles.append(p.register_hook(lambda g, _n=prefix + n: fn(_n, g)))
        elif kind == "output":
            handles.append(mod.register_full_backward_hook(fn))
        else:
            raise ValueError(f"kind must be 'param' or 'output', got {kind!r}")
        if not handles:
            raise ValueError(f"module {module_name!r} has no trainable parameters to hook")
        self._hooks.extend(handles)
        return handles

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def autocast(self):
        if self.use_amp:
            return torch.autocast(device_type="cuda", dtype=self.amp_dtype)
        return contextlib.nullcontext()

    def no_sync(self):
        """DDP ``no_sync()`` when this micro-step is not an update step; otherwise a no-op."""
        if self.world_size > 1 and not self.is_update_step:
            return self.ddp_model.no_sync()
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ step building blocks
    def prepare_batch(self, batch, train: bool):
        for m in self.methods:
            batch = m.transform_batch(batch, train)
        return batch.to(self.device)

    def forward_loss(self, batch, **model_kwargs):
        """``(loss, out, stats)``: model loss + every method's extra losses; stats hold
        ``loss`` (total), the model's stats (its own loss as ``loss_model``) and each extra term."""
        kw: Dict[str, Any] = {}
        for m in self.methods:
            kw.update(m.forward_kwargs(batch) or {})
        kw.update(model_kwargs)
        with self.autocast():
            out = self.ddp_model(batch, **kw)
            if getattr(out, "loss", None) is None:
                raise RuntimeError("model output has no loss (batch without tokens?)")
            stats = _out_stats(out)
            loss = out.loss
            stats["loss_model"] = float(loss.detach())
            for m in self.methods:
                extra = m.extra_losses(batch, out, self.model) or {}
                for k, v in extra.items():
                    if k in stats and k != "loss":
                        raise ValueError(f"extra loss name {k!r} of {m.method_name()} clashes")
                    loss = loss + v
                    stats[k] = float(v.detach())
            for m in self.methods:             # after every extra loss: they may report what those computed
                for k, v in (m.extra_stats(batch, out, self.model) or {}).items():
                    if k in stats or k == "loss":
                        raise ValueError(f"extra stat name {k!r} of {m.method_name()} clashes")
                    stats[k] = float(v.detach()) if isinstance(v, torch.Tensor) else float(v)
        stats["loss"] = float(loss.detach())
        return loss, out, stats

    def backward(self, loss: torch.Tensor) -> None:
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def optimizer_step(self) -> Dict[str, float]:
        """Unscale, clip, step (skipped on a non-finite gradient norm), scheduler, zero-grad."""
        self._sync_trainable_grads()
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        clip = float(self.config.grad_clip) if self.config.grad_clip and self.config.grad_clip > 0 else float("inf")
        norm = float(torch.nn.utils.clip_grad_norm_(self.params, clip))
        stats = {"grad_norm": norm, "lr": self.lr}
        if not math.isfinite(norm):
            logger.warning("step %d: non-finite gradient norm, update skipped", self.step + 1)
            if self.scaler is not None:
                self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            stats["skipped"] = 1.0
            return stats
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return stats

    def _sync_trainable_grads(self) -> None:
        """Under DDP: average the gradients of the registered trainable modules over the ranks (DDP
        does that for the model's parameters only); a parameter without a gradient counts as 0."""
        if self.world_size == 1 or not self.trainable_params:
            return
        import torch.distributed as dist
        for p in self.trainable_params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)
            p.grad.div_(self.world_size)

    def default_train_step(self, batch) -> Dict[str, float]:
        with self.no_sync():
            loss, out, stats = self.forward_loss(batch)
            self.backward(loss / self.accum_scale)
        if self.is_update_step:
            stats.update(self.optimizer_step())
        return stats

    # ------------------------------------------------------------------ data
    def _loader(self, dataset, sampler, epoch: int):
        g = torch.Generator()
        g.manual_seed(int(self.config.seed) * 1000003 + epoch * 101 + self.rank)
        return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=self.collate_fn,
                                           num_workers=self.config.num_workers,
                                           pin_memory=self.config.pin_memory, generator=g)

    # ------------------------------------------------------------------ logging
    def _setup_logging(self) -> None:
        os.makedirs(self.exp_dir, exist_ok=True)
        logger.setLevel(logging.INFO)
        fmt = logging.Formatter("%(asctime)s [%(levelname)s] %(message)s")
        if self.is_main:
            fh = logging.FileHandler(os.path.join(self.exp_dir, "train.log"))
            fh.setFormatter(fmt)
            logger.addHandler(fh)
            self._log_handlers.append(fh)
            def console(lg):
                return any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
                           for h in lg.handlers)
            # a console handler unless one exists already here or on the root logger (propagation)
            if not console(logger) and not (logger.propagate and console(logging.getLogger())):
                sh = logging.StreamHandler(sys.stderr)
                sh.setFormatter(fmt)
                logger.addHandler(sh)
                self._log_handlers.append(sh)
            if self.config.tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                    self._tb = SummaryWriter(os.path.join(self.exp_dir, "tensorboard"))
                except Exception as e:  # tensorboard not installed
                    logger.warning("TensorBoard unavailable (%s); skipped", e)
        else:
            logger.setLevel(logging.WARNING)

    def _close_logging(self) -> None:
        for h in self._log_handlers:
            logger.removeHandler(h)
            h.close()
        self._log_handlers = []
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def _tb_log(self, prefix: str, stats: Mapping[str, float], step: int) -> None:
        if self._tb is not None:
            for k, v in stats.items():
                self._tb.add_scalar(f"{prefix}/{k}", v, step)

    # ------------------------------------------------------------------ distributed utils
    def _all_reduce_sums(self, sums: Dict[str, float], counts: Dict[str, float]):
        if self.world_size == 1:
            return sums, counts
        import torch.distributed as dist
        objs: List[Any] = [None] * self.world_size
        dist.all_gather_object(objs, (sums, counts))
        s: Dict[str, float] = {}
        n: Dict[str, float] = {}
        for ss, nn_ in objs:
            for k in ss:
                s[k] = s.get(k, 0.0) + ss[k]
                n[k] = n.get(k, 0.0) + nn_[k]
        return s, n

    def _rank_state(self) -> Dict[str, Any]:
        return {"rng": rng_state(),
                "methods": [{"name": m.method_name(), "state": m.state_dict()} for m in self.methods]}

    def _gather_rank_states(self) -> List[Dict[str, Any]]:
        st = self._rank_state()
        if self.world_size == 1:
            return [st]
        import torch.distributed as dist
        objs: List[Any] = [None] * self.world_size
        dist.all_gather_object(objs, st)
        return objs

    def _barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist
            dist.barrier()

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> str:
        return os.path.join(self.exp_dir, CKPT_NAME)

    def state_dict(self) -> Dict[str, Any]:
        """The full training state (weights-only-loadable).  Collective under DDP."""
        ranks = self._gather_rank_states()
        return {
            "format": CKPT_FORMAT,
            "model": self.model.state_dict(),
            "trainables": {n: {k: v.detach().clone() for k, v in tm.state_dict().items()}
                           for n, tm in self.trainables.items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": self.epoch, "epoch_done": self.epoch_done,
            "sampler": self.train_sampler.state_dict(position=self.batches_in_epoch),
            "step": self.step, "micro_step": self.micro_step,
            "best": [[float(v), int(e)] for v, e in self.best],
            "bad_epochs": self.bad_epochs, "stopped_early": self.stopped_early,
            "history": self.history,
            "world_size": self.world_size,
            "ranks": ranks,
            "config": self.config.to_dict(),
        }

    def save(self) -> Optional[str]:
        sd = self.state_dict()  # collective
        path = None
        if self.is_main:
            path = save_checkpoint(sd, self.checkpoint_path)
        self._barrier()
        return path

    def load_state_dict(self, ck: Mapping[str, Any], path: str = "<state>") -> None:
        if ck.get("format") != CKPT_FORMAT:
            raise CheckpointError(path, f"not an avsr trainer checkpoint (format {ck.get('format')!r})")
        self.model.load_state_dict(ck["model"])
        if "trainables" in ck:          # (older checkpoints have none; a method may restore its own then)
            saved_t = ck["trainables"]
            if set(saved_t) != set(self.trainables):
                raise CheckpointError(path, f"checkpoint has trainable module(s) {sorted(saved_t)}, the methods "
                                            f"registered {sorted(self.trainables)}")
            for n, tm in self.trainables.items():
                tm.load_state_dict(saved_t[n])
        elif self.trainables:
            logger.warning("%s: no trainable-module weights in the checkpoint; %s start fresh unless a method "
                           "restores them", path, sorted(self.trainables))
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        if self.scaler is not None and ck.get("scaler") is not None:
            self.scaler.load_state_dict(ck["scaler"])
        self.epoch, self.epoch_done = int(ck["epoch"]), bool(ck["epoch_done"])
        self.train_sampler.load_state_dict(ck["sampler"])
        self.batches_in_epoch = int(ck["sampler"]["position"])
        self.step, self.micro_step = int(ck["step"]), int(ck["micro_step"])
        self.best = [(float(v), int(e)) for v, e in ck["best"]]
        self.bad_epochs, self.stopped_early = int(ck["bad_epochs"]), bool(ck["stopped_early"])
        self.history = list(ck["history"])
        ranks = ck["ranks"]
        if int(ck.get("world_size", 1)) != self.world_size or len(ranks) != self.world_size:
            logger.warning("%s: saved with %s rank(s), resuming with %d: RNG/method states of rank 0 "
                           "are used, the continuation is not exact", path, ck.get("world_size"), self.world_size)
            rs = ranks[0]
        else:
            rs = ranks[self.rank]
        set_rng_state(rs["rng"])
        saved = rs["methods"]
        if len(saved) != len(self.methods):
            raise CheckpointError(path, f"checkpoint has {len(saved)} method state(s), trainer has "
                                        f"{len(self.methods)} method(s)")
        for m, s in zip(self.methods, saved):
            if s["name"] != m.method_name():
                raise CheckpointError(path, f"method {s['name']!r} in the checkpoint, {m.method_name()!r} here")
            m.load_state_dict(s["state"])

    def resume(self, path: Optional[str] = None) -> bool:
        path = path or self.checkpoint_path
        if not os.path.isfile(path):
            return False
        # on the CPU: the model and the optimiser copy their tensors to their own device, while the RNG,
        # sampler and method states are host state (a CUDA tensor there cannot become numpy)
        ck = load_checkpoint(path, map_location="cpu")
        self.load_state_dict(ck, path)
        logger.info("resumed from %s: epoch %d (%s), %d batches into it, step %d", path, self.epoch,
                    "done" if self.epoch_done else "in progress", self.batches_in_epoch, self.step)
        return True

    def _snapshot_path(self, epoch: int) -> str:
        return os.path.join(self.exp_dir, f"epoch{epoch}.pth")

    # ------------------------------------------------------------------ validation / selection
    @torch.no_grad()
    def validate(self) -> Dict[str, float]:
        if self.valid_set is None:
            return {}
        self.model.eval()
        for tm in self.trainables.values():
            tm.eval()
        sums: Dict[str, float] = {}
        counts: Dict[str, float] = {}
        errs = ref = 0.0
        loader = self._loader(self.valid_set, self.valid_sampler, 0)
        for batch in loader:
            batch = self.prepare_batch(batch, train=False)
            _, out, stats = self.forward_loss(batch)
            stats["loss"] = stats.pop("loss_model")  # validation loss = the model's own loss
            w = float(len(batch))
            for k, v in stats.items():
                if math.isfinite(v):
                    sums[k] = sums.get(k, 0.0) + v * w
                    counts[k] = counts.get(k, 0.0) + w
            if self.cer_fn is not None:
                e, r = self.cer_fn(self.model, batch, out)
                errs += float(e)
                ref += float(r)
        if self.cer_fn is not None:
            sums["cer"], counts["cer"] = errs, max(ref, 0.0)
        sums, counts = self._all_reduce_sums(sums, counts)
        self._train_mode()
        return {k: sums[k] / counts[k] for k in sums if counts[k] > 0}

    def _mode(self) -> str:
        if self.config.metric_mode != "auto":
            return self.config.metric_mode
        return "max" if self.config.metric.startswith("acc") else "min"

    def _update_best(self, epoch: int, value: float) -> bool:
        """Insert ``epoch`` into the best-N list; True when it is the new best."""
        sign = -1.0 if self._mode() == "max" else 1.0
        prev_best = self.best[0][0] if self.best else None
        entries = self.best + [(value, epoch)]
        entries.sort(key=lambda t: (sign * t[0], t[1]))
        self.best = entries[:max(int(self.config.best_n), 1)]
        improved = prev_best is None or sign * value < sign * prev_best
        return improved

    # ------------------------------------------------------------------ main loop
    def _train_epoch(self, epoch: int) -> None:
        from tqdm import tqdm
        c = self.config
        self._train_mode()
        self.train_sampler.set_epoch(epoch)
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(epoch)
        n_batches = len(self.train_sampler)
        start = self.batches_in_epoch
        loader = self._loader(self.train_set, self.train_sampler, epoch)
        accum = int(c.accum_grad)
        avg, interval = _Avg(), _Avg()    # epoch means / means since the last log line
        t0 = time.time()
        show = bool(c.progress and self.is_main and _is_terminal(sys.stderr))
        bar = tqdm(total=n_batches, initial=start, desc=f"epoch {epoch}", leave=False,
                   disable=not show, dynamic_ncols=True)
        redirect = contextlib.nullcontext()
        if show:
            from tqdm.contrib.logging import logging_redirect_tqdm
            redirect = logging_redirect_tqdm(loggers=[logger])
        try:
            redirect.__enter__()
            for batch in loader:
                i = self.batches_in_epoch                     # index of this batch in the epoch
                group_start = (i // accum) * accum
                self.accum_scale = min(accum, n_batches - group_start)
                self.is_update_step = (i + 1) % accum == 0 or i + 1 == n_batches
                batch = self.prepare_batch(batch, train=True)
                step0 = self.step                             # a method may make several updates per batch
                if self._step_owner is not None:
                    stats = self._step_owner.train_step(self, batch) or {}
                else:
                    stats = self.default_train_step(batch)
                self.batches_in_epoch += 1
                self.micro_step += 1
                avg.add(stats, float(len(batch)))
                interval.add(stats, float(len(batch)))
                bar.update(1)
                if self.is_update_step:
                    for m in self.methods:
                        m.on_step_end(self, stats)
                    if _crossed(step0, self.step, c.log_interval) and self.is_main:
                        means, interval = interval.means(), _Avg()
                        logger.info("epoch %d step %d (%d/%d): %s", epoch, self.step, self.batches_in_epoch,
                                    n_batches, " ".join(f"{k}={v:.4g}" for k, v in sorted(means.items())))
                        self._tb_log("train", means, self.step)
                        bar.set_postfix(loss=f"{means.get('loss', float('nan')):.3f}")
                    if (c.save_every_steps and _crossed(step0, self.step, c.save_every_steps)
                            and self.batches_in_epoch < n_batches):
                        self.save()
                    if self.steps_spent():
                        break                                  # the step budget is spent: validate and stop
        finally:
            redirect.__exit__(None, None, None)
            bar.close()
        if self.is_main:
            logger.info("epoch %d trained in %.1fs: %s", epoch, time.time() - t0,
                        " ".join(f"{k}={v:.4g}" for k, v in sorted(avg.means().items())))
        self._train_means = avg.means()
        self._train_seconds = time.time() - t0   # this call's part of the epoch (resumed: only the rest)

    def _end_epoch(self, epoch: int) -> None:
        c = self.config
        drop: set = set()
        tv = time.time()
        vstats = self.validate()
        valid_seconds = time.time() - tv
        for m in self.methods:
            m.on_epoch_end(self, epoch, vstats)
        rec = {"epoch": epoch, "step": self.step, "lr": self.lr,
               "train": {k: float(v) for k, v in getattr(self, "_train_means", {}).items()},
               "valid": {k: float(v) for k, v in vstats.items()},
               "train_seconds": float(getattr(self, "_train_seconds", float("nan"))),
               "valid_seconds": float(valid_seconds)}
        self.history.append(rec)
        if self.is_main:
            logger.info("epoch %d valid: %s", epoch, " ".join(f"{k}={v:.4g}" for k, v in sorted(vstats.items())))
            self._tb_log("valid", vstats, epoch)
        if c.metric in vstats:
            if self.is_main:
                save_checkpoint({"model": self.model.state_dict(), "epoch": epoch,
                                 "valid": rec["valid"]}, self._snapshot_path(epoch))
            old = {e for _, e in self.best}
            improved = self._update_best(epoch, float(vstats[c.metric]))
            self.bad_epochs = 0 if improved else self.bad_epochs + 1
            keep = {e for _, e in self.best}
            if not c.keep_all_epochs:
                drop = (old | {epoch}) - keep
            if c.patience and self.bad_epochs >= int(c.patience):
                self.stopped_early = True
                if self.is_main:
                    logger.info("early stop: %s has not improved for %d epoch(s) (best %.4g at epoch %d)",
                                c.metric, self.bad_epochs, self.best[0][0], self.best[0][1])
        elif self.valid_set is not None:
            logger.warning("metric %r not in the validation stats %s", c.metric, sorted(vstats))
        self.epoch_done = True
        self.batches_in_epoch = 0
        self.save()
        if self.is_main:  # after the checkpoint that no longer lists them
            for e in drop:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._snapshot_path(e))

    def average_best(self) -> Tuple[Optional[str], Optional[str]]:
        if not self.best or not self.is_main:
            return None, None
        c = self.config
        paths = [self._snapshot_path(e) for _, e in self.best]
        avg = average_checkpoints(paths)
        out = os.path.join(self.exp_dir, f"valid.{c.metric}.ave_{len(paths)}best.pth")
        save_checkpoint(avg, out)
        best = os.path.join(self.exp_dir, f"valid.{c.metric}.best.pth")
        save_checkpoint(load_checkpoint(paths[0])["model"], best)
        logger.info("averaged %d best epoch(s) by %s (%s) -> %s", len(paths), c.metric,
                    ", ".join(f"{e}:{v:.4g}" for v, e in self.best), out)
        return out, best

    def steps_spent(self) -> bool:
        """Whether ``max_steps`` (when set) optimiser updates have been made."""
        return bool(self.config.max_steps) and self.step >= int(self.config.max_steps)

    def fit(self) -> FitResult:
        self._setup_logging()
        try:
            if self.init_result is not None and self.is_main:
                r = self.init_result
                logger.info("init from %s: loaded %d tensors, missing %s, unexpected %s, shape mismatch %s",
                            self.config.init, len(r.loaded), r.missing, r.unexpected, r.shape_mismatch)
            if self.config.resume:
                self.resume()
            if self.is_main:
                logger.info("training %d parameters (%d trainable), %d frozen module(s), methods: %s, "
                            "world size %d, device %s, amp %s", sum(p.numel() for p in self.model.parameters()),
                            sum(p.numel() for p in self.params), len(self.frozen),
                            self.methods, self.world_size, self.device, self.use_amp)
            epochs_run = 0
            while not self.stopped_early:
                if self.epoch_done:
                    if self.epoch >= self.config.max_epochs or self.steps_spent():
                        break
                    self.epoch += 1
                    self.epoch_done = False
                    self.batches_in_epoch = 0
                if self.epoch > self.config.max_epochs:
                    break
                if self.batches_in_epoch == 0:
                    for m in self.methods:
                        m.on_epoch_start(self, self.epoch)
                self._train_epoch(self.epoch)
                self._end_epoch(self.epoch)
                epochs_run += 1
            averaged, best = self.average_best()
            self._barrier()
            return FitResult(best=list(self.best), averaged=averaged, best_path=best, epochs_run=epochs_run,
                             stopped_early=self.stopped_early, history=list(self.history))
        finally:
            self._close_logging()
