"""Row specs: the experiments a recipe trains on top of its models, as data (``conf/rows/*.yaml``).

A row spec file has ``defaults`` (fields every row gets unless it sets them), ``rows`` (name → row),
``roles`` (which rows the claims compare) and ``tables`` (name → the rows it trains, optional
per-table ``grid``/``probe`` overrides, ``override: {ROW: {field: value}}`` (the row's fields for this
table, replaced whole, before the grid override), and the eval ``search``).  A row:

``init``
    a recipe model (``a0``, ``v``, ``av0``: ``$exp_dir/train_<m>/model.pth``; ``av0_init``: AV0's own
    ``--init`` specs) or another row (the run dev chose for it; the row must come later in the table).
``methods``
    ``avsr.bin.train --method`` specs: a name, or ``{name: {options}}`` (written as ``name:{json}``);
    a string value ``"@av0"`` stands for a recipe model's ``model.pth``.
``options``
    train options such as ``d_prob``, ``drop_rate`` (a number or ``[lo, hi]``), ``drop_pattern``.
``freeze`` (``--freeze_param`` prefixes), ``set`` (``--set KEY=VALUE``), ``audio_aug`` (bool: AV0's
own ``audio_noise`` methods), ``lr``, ``warmup_steps``, ``budget``: ``{epochs: N}`` (fixed
epochs) or ``{steps: N}`` (optimiser updates; the epoch in progress then ends and every epoch run is
averaged), optionally both (whichever comes first); the optimiser steps a run took are recorded per run
as ``budget_steps``.  Steps are counted from the recipe model a row starts from: a run's steps are its
own plus, when its init is another row, that row's run's, and ``steps`` caps that count (the run's own
``trainer.max_steps`` is the cap less its init's steps; the driver refuses a run whose init already took
the cap, and a finished run over it).  ``{steps: "@ROW"}`` is the count of the chosen run of an earlier
row ``ROW`` (``"@av0"``: the optimiser steps of the recipe's AV0 training), resolved when the run is
trained: the leaderboard's equal budgets.  ``init_share: S`` (0 < S < 1, with ``steps``, for a row whose
init is another row) splits the budget: the init row's chosen setting is trained again from its recipe
model for ``round(S * steps)`` steps (run ``<init run>-s<N>``) and the row's run starts from that, with
the rest of the budget (AV6 on AV5's budget, adapter training included).
``schedule``
    ``own`` (default: ``budget``, ``lr`` and ``warmup_steps`` as given) or ``av0``: the run trains on the
    recipe's AV0 schedule, its ``trainer`` ``max_epochs``, ``lr``, ``warmup_steps``, ``best_n`` and
    ``patience`` read from ``train_av0/config.yaml`` when the run is trained (rows that start where AV0
    started, ``av0_init``, and stand beside it: AV1, AV2, the merge ablation; MLA).  A row with ``schedule: av0``
    starts where AV0 started (``init: av0_init``) and sets no ``lr`` or ``warmup_steps`` of its own; it gets
    no step cap (not from ``defaults`` either) unless it sets one, ``budget: {steps: N or "@ROW"}`` and
    nothing else (MLA: AV0's schedule capped at AV0's optimiser steps); its steps are recorded.
``name``
    the row's run-name base, a format string with ``{init}`` (the init run's name); default the row name.
``grid``
    ``{axis: {values: [...], name: "-{}", omit: V}}``: one run per combination (axes vary the first one
    slowest), at most 4 axes; a run's name is the base plus, per axis, ``name.format(value)`` unless
    the value is ``omit``.  Axes are field paths: ``methods.<method>.<key>``, ``options.<key>``,
    ``budget.epochs``, ``budget.steps``, ``budget.init_share``.  With several runs ``select`` says how dev chooses: ``sweep`` (sweep dir name),
    ``rates`` (random-loss rates whose mean greedy dev CER is the score), ``threshold`` (MS-Adapter
    routing), ``label`` (model name in the sweep); :func:`choose_on_dev` takes the minimum, ties to
    the earlier run.
``probe``
    ``{axis, values, name, sweep}``: runs tried on dev only with the chosen setting (reported, not used).
``eval_best_per``
    an axis: the eval sweep also decodes, for every other value of it, the best run on dev.
``route``
    ``{thresholds, sweep}``: the MS-Adapter routing threshold tuned on dev (mean CER over the random grid).

A *decode-only* row has just ``decode: {of: ROW, adapters: zero, threshold: T}`` and trains nothing: the
eval sweep decodes the run dev chose for ``ROW`` (a training row listed before it in the table) with
every MS-Adapter LoRA ``B`` set to 0 (:func:`avsr.models.lora.identity_adapter_state`; ``adapters: zero``
is the one form), routed at threshold ``T`` (default 0, as ``NAME=DIR@T`` of ``avsr eval``; ``none`` =
never route).  ``AV6-noadapter`` is ``{of: AV6, adapters: zero}``: AV6's base weights, which are AV5's
(the MS-Adapter training changes nothing else), on the same routed audio-only path as AV6 but without
the adapters' effect, so AV6 against it is the adapters' own gain.  Decode-only rows are in
:attr:`RowSet.decodes`, not in :attr:`RowSet.rows` (they have no runs; :func:`expand` refuses them).

:func:`load_spec` parses and validates (errors name the file and the field); :func:`expand` gives the
concrete :class:`Run` list of a row.
"""
from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import yaml

__all__ = ["RowSpecError", "Row", "Run", "RowSet", "Decode", "load_spec", "expand", "choose_on_dev",
           "method_specs", "RECIPE_MODELS", "MAX_AXES", "DECODE_ADAPTERS", "SCHEDULES"]

RECIPE_MODELS = ("a0", "v", "av0", "av0_init")
MAX_AXES = 4
#: ``budget: {steps: N}`` alone: the epoch cap is this (the steps end the training first)
STEPS_ONLY_MAX_EPOCHS = 1000
_ROW_KEYS = {"init", "name", "methods", "options", "freeze", "set", "audio_aug", "lr", "warmup_steps", "budget",
             "grid", "select", "probe", "eval_best_per", "route", "decode", "schedule"}
_DEFAULT_KEYS = {"budget", "lr", "warmup_steps", "audio_aug", "freeze", "methods", "options", "set"}
#: what a decode-only row does to the adapters of the run it decodes (``zero``: every LoRA B set to 0)
DECODE_ADAPTERS = ("zero",)
#: ``schedule`` values: the row's own budget / lr / warm-up, or the recipe AV0's (read when trained)
SCHEDULES = ("own", "av0")
_OPTIONS = {"d_prob": "--d_prob", "drop_rate": "--drop_rate", "drop_pattern": "--drop_pattern"}


class RowSpecError(ValueError):
    """A row spec file that does not parse or validate; the message starts with ``<file>: <field>:``."""


@dataclass
class Row:
    name: str
    init: str
    methods: List[Any] = field(default_factory=list)
    options: Dict[str, Any] = field(default_factory=dict)
    freeze: List[str] = field(default_factory=list)
    set: Dict[str, Any] = field(default_factory=dict)
    audio_aug: bool = True
    lr: float = 0.0005
    warmup_steps: int = 50
    budget: Dict[str, Any] = field(default_factory=lambda: {"epochs": 2})
    base_name: Optional[str] = None
    grid: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    select: Dict[str, Any] = field(default_factory=dict)
    probe: Dict[str, Any] = field(default_factory=dict)
    eval_best_per: Optional[str] = None
    route: Dict[str, Any] = field(default_factory=dict)
    schedule: str = "own"


@dataclass
class Run:
    """One concrete training run of a row: what ``avsr.bin.train`` gets (paths still symbolic)."""
    row: str
    name: str
    init: str                     # a recipe model or a row name (resolved by the driver)
    init_run: Optional[str]       # the init row's chosen run name (None for a recipe model)
    methods: List[Any]
    options: Dict[str, Any]
    freeze: List[str]
    set: Dict[str, Any]
    audio_aug: bool
    lr: float
    warmup_steps: int
    epochs: int
    values: Dict[str, Any]        # axis -> value of this run
    suffix: str                   # the part of the name the axes add
    steps: int = 0                # > 0: optimiser-update budget (trainer.max_steps)
    steps_of: Optional[str] = None  # the budget is the steps of this row's chosen run (or "av0"), resolved later
    init_share: Optional[float] = None  # split budget: the init row's part (its settings, retrained this share)
    schedule: str = "own"         # "av0": epochs, lr, warm-up, best_n, patience of the recipe's AV0 (driver)

    def fmt(self, template: str) -> str:
        """``template`` with ``{run}``, ``{init}``, ``{suffix}`` and ``{<axis>}`` (e.g. ``{budget.epochs}``)."""
        out = template
        for k, v in {"run": self.name, "init": self.init_run or self.init, "suffix": self.suffix,
                     **{a: f"{x:g}" if isinstance(x, float) else str(x) for a, x in self.values.items()}}.items():
            out = out.replace("{" + k + "}", v)
        return out

    def train_args(self, resolve, aug: Sequence[str] = ()) -> List[str]:
        """The ``avsr.bin.train`` arguments after ``--init``: options, ``aug`` (AV0's ``--method
        audio_noise:...`` arguments, when the run has ``audio_aug``), the ``--method`` specs, the ``--set``
        overrides; ``resolve(model)`` maps ``"@m"`` values to paths."""
        out: List[str] = []
        for k, v in self.options.items():
            out += [_OPTIONS[k], *([str(x) for x in v] if isinstance(v, list) else [str(v)])]
        if self.audio_aug:
            out += list(aug)
        for spec in method_specs(self.methods, resolve):
            out += ["--method", spec]
        if self.set:
            out += ["--set", *(f"{k}={v}" for k, v in self.set.items())]
        return out


@dataclass
class Decode:
    """A decode-only row: the chosen run of row ``of`` with its adapters ``adapters`` (``zero``),
    routed at ``threshold`` (a share of present frames; None = never route)."""
    name: str
    of: str
    adapters: str = "zero"
    threshold: Optional[float] = 0.0

    def eval_spec(self, packed_dir: str) -> str:
        """The ``avsr eval --models`` spec ``NAME=DIR@T`` of this row for its packed model dir."""
        t = "none" if self.threshold is None else f"{self.threshold:g}"
        return f"{self.name}={packed_dir}@{t}"


@dataclass
class RowSet:
    path: str
    table: str
    rows: Dict[str, Row]          # in training order
    roles: Dict[str, Any]
    search: str                   # beam<N> | greedy
    decodes: Dict[str, Decode] = field(default_factory=dict)   # decode-only rows, in table order


def method_specs(methods, resolve=lambda m: m) -> List[str]:
    """``--method`` strings of ``methods`` (a name, or ``{name: {options}}``); string values ``"@m"``
    become ``resolve(m)``.  The options keep their order (``json.dumps``)."""
    out = []
    for m in methods:
        if isinstance(m, str):
            out.append(m)
            continue
        (name, opts), = m.items()
        opts = {k: resolve(v[1:]) if isinstance(v, str) and v.startswith("@") else v for k, v in (opts or {}).items()}
        out.append(f"{name}:{json.dumps(opts)}")
    return out


def tie_key(x: float) -> float:
    """A dev score as compared for a choice: rounded to 1e-9, so that two means of the same error counts
    summed in another order (they differ in the last bit) tie, and the tie rule decides."""
    return round(float(x), 9)


def choose_on_dev(grid, score):
    """The key of ``grid`` (``{key: row}`` in the order tried, e.g. ``(distance, weight)`` or adapter epochs)
    whose row has the lowest ``score[row]``; ties (equal to 1e-9, :func:`tie_key`) go to the earlier key.
    No scores (one row, nothing to choose): the first.  With scores, every row must have one."""
    order = list(grid)
    if not score:
        return order[0]
    missing = [r for r in grid.values() if r not in score]
    if missing:
        raise ValueError(f"no dev score for {missing}")
    return min(order, key=lambda k: (tie_key(score[grid[k]]), order.index(k)))


# ------------------------------------------------------------------------------------------ parsing
def _err(path, where, msg):
    return RowSpecError(f"{path}: {where}: {msg}")


def _check_axis(path, where, axis, row_methods):
    parts = axis.split(".")
    if parts[0] == "budget" and parts[1:] in (["epochs"], ["steps"], ["init_share"]):
        return
    if parts[0] == "options" and len(parts) == 2 and parts[1] in _OPTIONS:
        return
    if parts[0] == "methods" and len(parts) == 3:
        names = [m if isinstance(m, str) else next(iter(m)) for m in row_methods]
        if parts[1] not in names:
            raise _err(path, where, f"axis {axis!r} names method {parts[1]!r}, not in the row's methods {names}")
        return
    raise _err(path, where, f"axis {axis!r} is not budget.epochs, budget.steps, budget.init_share, "
                            f"options.<{'|'.join(_OPTIONS)}> or methods.<method>.<key>")


def _parse_grid(path, where, grid, row_methods):
    if not isinstance(grid, dict):
        raise _err(path, where, "must be a mapping axis -> {values, name, omit}")
    if len(grid) > MAX_AXES:
        raise _err(path, where, f"{len(grid)} axes; at most {MAX_AXES}")
    out = {}
    for axis, a in grid.items():
        w = f"{where}.{axis}"
        _check_axis(path, w, axis, row_methods)
        if not isinstance(a, dict) or not isinstance(a.get("values"), list) or not a["values"]:
            raise _err(path, w, "needs a non-empty 'values' list")
        unknown = set(a) - {"values", "name", "omit"}
        if unknown:
            raise _err(path, w, f"unknown keys {sorted(unknown)}")
        if len(set(map(repr, a["values"]))) != len(a["values"]):
            raise _err(path, w, f"repeated values {a['values']}")
        out[axis] = {"values": list(a["values"]), "name": str(a.get("name", "-{}")), "omit": a.get("omit")}
    return out


def _parse_decode(path, name, d):
    where = f"rows.{name}"
    extra = set(d) - {"decode"}
    if extra:
        raise _err(path, where, f"a decode-only row has only 'decode'; also got {sorted(extra)}")
    dec = d["decode"]
    if not isinstance(dec, dict) or "of" not in dec:
        raise _err(path, f"{where}.decode", "must be {of: ROW, adapters: zero, threshold: T}")
    unknown = set(dec) - {"of", "adapters", "threshold"}
    if unknown:
        raise _err(path, f"{where}.decode", f"unknown fields {sorted(unknown)}")
    adapters = str(dec.get("adapters", "zero"))
    if adapters not in DECODE_ADAPTERS:
        raise _err(path, f"{where}.decode.adapters", f"must be one of {DECODE_ADAPTERS}, got {adapters!r}")
    thr = dec.get("threshold", 0.0)
    if isinstance(thr, str) and thr.lower() == "none" or thr is None:
        thr = None
    else:
        try:
            thr = float(thr)
        except (TypeError, ValueError):
            raise _err(path, f"{where}.decode.threshold", f"must be a number in [0, 1] or none, got {thr!r}") from None
        if not 0.0 <= thr <= 1.0:
            raise _err(path, f"{where}.decode.threshold", f"must be in [0, 1], got {thr}")
    return Decode(name=name, of=str(dec["of"]), adapters=adapters, threshold=thr)


def _parse_row(path, name, d, defaults):
    where = f"rows.{name}"
    if not isinstance(d, dict):
        raise _err(path, where, "must be a mapping")
    unknown = set(d) - _ROW_KEYS
    if unknown:
        raise _err(path, where, f"unknown fields {sorted(unknown)} (known: {sorted(_ROW_KEYS)})")
    schedule = str(d.get("schedule", "own"))
    if schedule not in SCHEDULES:
        raise _err(path, f"{where}.schedule", f"must be one of {SCHEDULES}, got {schedule!r}")
    if schedule == "av0":
        own = sorted({"lr", "warmup_steps"} & set(d))
        if "budget" in d and not (isinstance(d["budget"], dict) and set(d["budget"]) == {"steps"}):
            own.append("budget")
        if own:
            raise _err(path, where, f"schedule: av0 takes AV0's epochs, lr and warm-up (a step cap "
                                    f"budget: {{steps: ...}} is allowed); the row also sets {sorted(own)}")
        if str(d.get("init")) != "av0_init":
            raise _err(path, f"{where}.init", f"schedule: av0 trains as AV0 was trained, from where AV0 started: "
                                              f"init must be av0_init, got {d.get('init')!r}")
    own_budget = d.get("budget")
    d = {**copy.deepcopy(defaults), **d}
    if schedule == "av0":              # AV0's epochs; a step cap only when the row sets one (not the defaults')
        d["budget"] = copy.deepcopy(own_budget) if own_budget else {"epochs": 2}
    if "init" not in d:
        raise _err(path, where, "needs an 'init' (a recipe model or another row)")
    methods = d.get("methods") or []
    if not isinstance(methods, list):
        raise _err(path, f"{where}.methods", "must be a list")
    for i, m in enumerate(methods):
        if not (isinstance(m, str) or (isinstance(m, dict) and len(m) == 1
                                       and isinstance(next(iter(m.values())) or {}, dict))):
            raise _err(path, f"{where}.methods[{i}]", f"must be a name or {{name: {{options}}}}, got {m!r}")
    options = d.get("options") or {}
    bad = set(options) - set(_OPTIONS)
    if bad:
        raise _err(path, f"{where}.options", f"unknown options {sorted(bad)} (known: {sorted(_OPTIONS)})")
    budget = d.get("budget", {"epochs": 2}) or {}

    def _ok(k, v):
        if k == "steps" and isinstance(v, str):
            return v.startswith("@") and len(v) > 1
        if k == "init_share":
            return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1
    if not budget or set(budget) - {"epochs", "steps", "init_share"} or not all(_ok(k, v) for k, v in budget.items()):
        raise _err(path, f"{where}.budget", f"must be {{epochs: N}} and/or {{steps: N or \"@ROW\"}} with N >= 1 "
                                           f"(and, from another row, init_share in (0, 1)), got {budget!r}")
    freeze = d.get("freeze") or []
    if not isinstance(freeze, list):
        raise _err(path, f"{where}.freeze", "must be a list of parameter name prefixes")
    grid = _parse_grid(path, f"{where}.grid", d.get("grid") or {}, methods)
    if schedule == "av0" and any(a.startswith("budget.") for a in grid):
        raise _err(path, f"{where}.grid", "schedule: av0 takes AV0's epochs; a budget axis contradicts it")
    probe = d.get("probe") or {}
    if probe:
        miss = {"axis", "values", "sweep"} - set(probe)
        if miss:
            raise _err(path, f"{where}.probe", f"missing {sorted(miss)}")
        _check_axis(path, f"{where}.probe", probe["axis"], methods)
    if d.get("eval_best_per") and d["eval_best_per"] not in grid:
        raise _err(path, f"{where}.eval_best_per", f"{d['eval_best_per']!r} is not a grid axis")
    if "init_share" in budget or "budget.init_share" in grid:
        if "steps" not in budget:
            raise _err(path, f"{where}.budget", "init_share splits a step budget: it needs steps")
        if str(d["init"]) in RECIPE_MODELS:
            raise _err(path, f"{where}.budget", f"init_share splits the budget with the init row; init "
                                               f"{d['init']!r} is a recipe model")
    n = 1
    for a in grid.values():
        n *= len(a["values"])
    if n > 1 and not (d.get("select") or {}).get("sweep"):
        raise _err(path, f"{where}.select", "a grid of several runs needs select: {sweep, rates}")
    return Row(name=name, init=str(d["init"]), methods=methods, options=dict(options), freeze=[str(x) for x in freeze],
               set=dict(d.get("set") or {}), audio_aug=bool(d.get("audio_aug", True)), lr=float(d.get("lr", 0.0005)),
               warmup_steps=int(d.get("warmup_steps", 50)), budget=dict(budget), base_name=d.get("name"), grid=grid,
               select=dict(d.get("select") or {}), probe=dict(probe), eval_best_per=d.get("eval_best_per"),
               route=dict(d.get("route") or {}), schedule=schedule)


def load_spec(path: str, table: str) -> RowSet:
    """Parse and validate the row spec file ``path`` for ``table``; raise :class:`RowSpecError`."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as e:
        raise RowSpecError(f"{path}: {e}") from e
    if not isinstance(doc, dict):
        raise _err(path, "top level", "must be a mapping")
    unknown = set(doc) - {"defaults", "rows", "roles", "tables"}
    if unknown:
        raise _err(path, "top level", f"unknown fields {sorted(unknown)}")
    defaults = doc.get("defaults") or {}
    bad = set(defaults) - _DEFAULT_KEYS
    if bad:
        raise _err(path, "defaults", f"unknown fields {sorted(bad)} (known: {sorted(_DEFAULT_KEYS)})")
    rows_doc = doc.get("rows") or {}
    tables = doc.get("tables") or {}
    if table not in tables:
        raise _err(path, "tables", f"no table {table!r} (have {sorted(tables)})")
    t = tables[table]
    unknown = set(t) - {"rows", "grid", "probe", "search", "override"}
    if unknown:
        raise _err(path, f"tables.{table}", f"unknown fields {sorted(unknown)}")
    overrides = t.get("override") or {}
    if not isinstance(overrides, dict):
        raise _err(path, f"tables.{table}.override", "must be a mapping row -> {field: value}")
    for name, ov in overrides.items():
        if name not in (t.get("rows") or []):
            raise _err(path, f"tables.{table}.override.{name}", f"{name!r} is not a row of tables.{table}.rows")
        if not isinstance(ov, dict) or set(ov) - (_ROW_KEYS - {"decode"}):
            raise _err(path, f"tables.{table}.override.{name}",
                       f"must be a mapping of row fields {sorted(_ROW_KEYS - {'decode'})}, got {ov!r}")
    search = str(t.get("search", "beam10"))
    if search != "greedy" and not (search.startswith("beam") and search[4:].isdigit()):
        raise _err(path, f"tables.{table}.search", f"must be greedy or beam<N>, got {search!r}")
    rows: Dict[str, Row] = {}
    decodes: Dict[str, Decode] = {}
    for name in t.get("rows") or []:
        if name not in rows_doc:
            raise _err(path, f"tables.{table}.rows", f"row {name!r} is not in rows ({sorted(rows_doc)})")
        if not isinstance(rows_doc[name], dict):
            raise _err(path, f"rows.{name}", "must be a mapping")
        d = dict(rows_doc[name])
        if "decode" in d and name in overrides:
            raise _err(path, f"tables.{table}.override.{name}", "a decode-only row has nothing to override")
        if "decode" in d:
            dec = _parse_decode(path, name, d)
            if dec.of not in rows:
                raise _err(path, f"rows.{name}.decode.of", f"{dec.of!r} is not a training row listed before it in "
                                                           f"tables.{table}.rows")
            decodes[name] = dec
            continue
        if name in overrides:              # this table's form of the row (fields replaced whole)
            d.update(copy.deepcopy(overrides[name]))
        over = (t.get("grid") or {}).get(name)
        if over is not None:               # narrower value lists for this table, same axes and names
            g = copy.deepcopy(d.get("grid") or {})
            for axis, vals in over.items():
                if axis not in g:
                    raise _err(path, f"tables.{table}.grid.{name}", f"{axis!r} is not an axis of rows.{name}.grid")
                g[axis]["values"] = list(vals)
            d["grid"] = g
        if name in (t.get("probe") or {}) and not t["probe"][name]:
            d.pop("probe", None)
        row = _parse_row(path, name, d, defaults)
        if row.init not in RECIPE_MODELS and row.init not in rows:
            raise _err(path, f"rows.{name}.init", f"{row.init!r} is neither a recipe model {RECIPE_MODELS} nor a "
                                                  f"row listed before it in tables.{table}.rows")
        rows[name] = row
    return RowSet(path=path, table=table, rows=rows, roles=dict(doc.get("roles") or {}), search=search,
                  decodes=decodes)


# ---------------------------------------------------------------------------------------- expansion
def _apply(run_fields, axis, value):
    parts = axis.split(".")
    if parts[0] == "budget":
        run_fields[parts[1]] = float(value) if parts[1] == "init_share" else int(value)
    elif parts[0] == "options":
        run_fields["options"][parts[1]] = value
    else:
        for i, m in enumerate(run_fields["methods"]):
            name = m if isinstance(m, str) else next(iter(m))
            if name == parts[1]:
                opts = {} if isinstance(m, str) else dict(m[name] or {})
                opts[parts[2]] = value
                run_fields["methods"][i] = {name: opts}


def _suffix(axis_spec, value):
    if axis_spec.get("omit") is not None and value == axis_spec["omit"]:
        return ""
    return axis_spec["name"].format(value)


def expand(row: Row, init_run: Optional[str] = None, extra: Optional[Dict[str, Any]] = None,
           base: Optional[str] = None) -> List[Run]:
    """The runs of ``row`` (one per grid combination, first axis slowest); ``init_run``: the chosen run of
    the row it starts from.  ``extra``: ``{axis: spec}`` replacing the grid (a probe), ``base``: the
    name the suffixes are added to (default the row's ``name`` formatted with ``{init}``)."""
    if isinstance(row, Decode):
        raise RowSpecError(f"rows.{row.name}: a decode-only row has no runs (it decodes {row.of}'s chosen run)")
    grid = extra if extra is not None else row.grid
    if base is None:
        base = (row.base_name or row.name).replace("{init}", init_run or row.init)
    runs = []
    for combo in itertools.product(*[a["values"] for a in grid.values()]) if grid else [()]:
        f = {"methods": copy.deepcopy(row.methods), "options": dict(row.options),
             "epochs": int(row.budget.get("epochs", STEPS_ONLY_MAX_EPOCHS if "steps" in row.budget else 2)),
             "steps": row.budget.get("steps", 0), "init_share": row.budget.get("init_share")}
        values = dict(zip(grid, combo))
        for axis, v in values.items():
            _apply(f, axis, v)
        suffix = "".join(_suffix(grid[a], v) for a, v in values.items())
        runs.append(Run(row=row.name, name=base + suffix, init=row.init, init_run=init_run, methods=f["methods"],
                        options=f["options"], freeze=list(row.freeze), set=dict(row.set), audio_aug=row.audio_aug,
                        lr=row.lr, warmup_steps=row.warmup_steps, epochs=f["epochs"],
                        steps=0 if isinstance(f["steps"], str) else int(f["steps"]),
                        steps_of=f["steps"][1:] if isinstance(f["steps"], str) else None, values=values,
                        suffix=suffix,
                        init_share=None if f["init_share"] is None else float(f["init_share"]),
                        schedule=row.schedule))
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise RowSpecError(f"rows.{row.name}.grid: two runs get the same name ({names}); give the axes names")
    return runs

