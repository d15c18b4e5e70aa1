"""The typed schema of train.py's config, and the checks that make a bad config fail before any work.

Hydra merges conf/ over the ``schema`` node registered here, so a wrong type or an unknown key under
``data``, ``loader``, ``forecast``, ``segment`` or ``evaluate`` fails at composition, naming the key; the
constructor groups (model, trainer, index, loader) are checked against their targets' signatures."""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.utils import get_method
from omegaconf import MISSING, DictConfig

from engine.data.checks import QUALITY_LIMITS
from engine.data.events import KNOWN_TYPES, MIN_YEAR, Columns
from engine.data.synthetic import SyntheticConfig

STAGES = ("all", "fit", "embed", "segment", "evaluate", "forecast", "recommend")


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key."""


@dataclass
class SourceSchema:
    path: str = MISSING
    name: str | None = None            # default: source<i>
    format: str = "auto"               # auto (by extension) | parquet | csv
    columns: dict[str, str] = field(default_factory=dict)  # field -> column; fields not given: data.columns
    event_types: dict[str, str] = field(default_factory=dict)  # its names -> canonical, e.g. {order: purchase}
    channel: str | None = None         # the channel of its rows without one
    timezone: str | None = None        # of its timestamps without a zone; null: UTC
    map_ids: bool = False              # its customer column holds keys that data.id_map maps


@dataclass
class IdMapSchema:
    path: str | None = None            # Parquet/CSV: key -> customer_id (null: no id map)
    key: str = "source_key"
    customer_id: str = "customer_id"
    source: str | None = None          # a column naming the source each row is for (null: every mapped source)
    unmapped: str = "drop"             # drop | keep (as the customer '<source>:<key>')


@dataclass
class AttributesSchema:
    path: str | None = None            # Parquet/CSV: customer_id plus numeric and categorical columns
    id_column: str = "customer_id"
    report_only: list[str] = field(default_factory=list)  # describe segments, never enter the model
    drop: list[str] = field(default_factory=list)         # never read
    max_categories: int = 20
    model: bool = False                # true: the other columns are inputs of the forecast head and the value
                                       # model (off by default: bench/results/attributes.md, they did not help)


@dataclass
class DataSchema:
    path: str | None = None
    sources: list[SourceSchema] = field(default_factory=list)
    id_map: IdMapSchema = field(default_factory=IdMapSchema)
    attributes: AttributesSchema = field(default_factory=AttributesSchema)
    format: str = "auto"
    event_types: dict[str, str] = field(default_factory=dict)
    channel: str | None = None
    timezone: str | None = None
    columns: Columns = field(default_factory=Columns)
    purchase_types: list[str] = field(default_factory=lambda: ["purchase"])
    return_types: list[str] = field(default_factory=lambda: ["return"])
    on_bad_rows: str = "fail"
    dedupe: bool = True
    min_count: int = 2
    cutoff: str | None = None
    strict: bool = False
    min_year: int = MIN_YEAR
    known_types: list[str] = field(default_factory=lambda: list(KNOWN_TYPES))
    max_null_share: float = 0.01
    max_bad_row_share: float = 0.01
    max_future_share: float = 0.01
    max_unknown_event_type_share: float = 0.9
    max_unmapped_share: float = 0.5
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class ForecastSchema:
    horizon_days: float = 30.0
    weight: float = 1.0
    calibrate: bool = True
    discount_rate: float = 0.1
    head_epochs: int = 30


@dataclass
class SegmentSchema:
    k: Any = "auto"
    k_min: int = 5
    k_max: int = 24
    niter: int = 25
    nredo: int = 3
    levels: list[int] | None = None
    top_n: int = 5
    progress: bool = False


@dataclass
class RepresentSchema:
    kind: str = "hybrid"
    factors: int = 64
    value_weight: float = 0.65
    sequence_weight: float = 0.5
    profile_weight: float = 0.5
    value: str = "ridge+forecast"
    value_scale: str = "linear+log"


@dataclass
class PrivacySchema:
    ledger: str | None = None  # the erasure ledger every run honours; null: erasures.jsonl beside out_dir


@dataclass
class RecommendSchema:
    enabled: bool = True
    n: int = 20
    horizon_days: float = 28.0
    exclude_recent_days: float = 0.0
    exclude_returned: bool = True
    new_only: bool = False
    categories: list[str] | None = None


@dataclass
class LookalikeSchema:
    tune: bool = True  # choose the signature scorer's weights on the history's last quarter (signature.tune)


@dataclass
class EvaluateSchema:
    lookalike_tasks: int = 25
    min_buyers: int = 10
    horizons: list[float] | None = None
    sections: list[str] = field(default_factory=lambda: ["lookalike", "segments", "forecast", "recommend"])


@dataclass
class TrainSchema:
    data: DataSchema = field(default_factory=DataSchema)
    forecast: ForecastSchema = field(default_factory=ForecastSchema)
    segment: SegmentSchema = field(default_factory=SegmentSchema)
    evaluate: EvaluateSchema = field(default_factory=EvaluateSchema)
    represent: RepresentSchema = field(default_factory=RepresentSchema)
    recommend: RecommendSchema = field(default_factory=RecommendSchema)
    lookalike: LookalikeSchema = field(default_factory=LookalikeSchema)
    privacy: PrivacySchema = field(default_factory=PrivacySchema)
    loader: Any = MISSING
    model: Any = MISSING
    trainer: Any = MISSING
    index: Any = MISSING
    stage: str = "all"
    out_dir: str = "outputs/bundle"
    work_dir: str = "outputs/bundle.work"
    bundle: str | None = None
    seed: int = 0
    ckpt_path: str | None = None
    restore_best: bool = True
    compile: bool = False
    horizon_days: float | None = None


ConfigStore.instance().store(name="schema", node=TrainSchema)


GROUPS = ("data", "loader", "model", "trainer", "segment", "index")  # conf/ groups: group=option selects one
FREE = ("model", "trainer", "loader", "index", "hydra")  # keys checked against their targets, or Hydra's own


def _keys(schema, prefix: str = "") -> list[str]:
    """Every dotted key of a schema dataclass (nested dataclasses flattened)."""
    import dataclasses

    out = []
    for f in dataclasses.fields(schema):
        key = f"{prefix}{f.name}"
        out.append(key)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            out += _keys(type(default), f"{key}.")
    return out


def unknown_keys(overrides: list[str]) -> list[str]:
    """One message per override whose key the schema does not have, with the closest keys ("did you mean");
    the constructor groups' keys and Hydra's own are left to their checks."""
    import difflib

    known = _keys(TrainSchema)
    messages = []
    for arg in overrides:
        if arg.startswith("-") or "=" not in arg:
            continue
        key = arg.split("=", 1)[0].lstrip("+~")
        if key in known or key.split(".")[0] in FREE or key in GROUPS or key.startswith("hydra/"):
            continue
        level = [k for k in known if k.count(".") == key.count(".")]  # alternatives as deep as the key
        close = difflib.get_close_matches(key, level, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(close)}?" if close else f"; keys start with {sorted({k.split('.')[0] for k in known} | set(FREE))}"
        messages.append(f"{key}: not a config key{hint}")
    return messages


def _module_file(module: str) -> Path | None:
    """The source file of ``module``, found without importing it (only its top-level package is located)."""
    import importlib.util

    top, *rest = module.split(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return Path(spec.origin) if spec is not None and spec.origin and not rest else None
    base = Path(next(iter(spec.submodule_search_locations))).joinpath(*rest)
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _static_parameters(target: str, depth: int = 0) -> dict[str, str] | None:
    """{argument: annotation text} of a function or a class's own __init__, read from the source with ast
    (following ``from X import name`` re-exports), so a config is checked without importing torch,
    Lightning or FAISS. {"**": ""} when it takes **kwargs; None when it cannot be read so (the caller then
    imports it)."""
    import ast

    module, _, name = target.rpartition(".")
    path = _module_file(module) if module and depth < 6 else None
    if path is None:
        return None
    for node in ast.parse(path.read_text()).body:
        fn = None
        if isinstance(node, ast.ClassDef) and node.name == name:
            fn = next((f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"), None)
            if fn is None:
                return None  # inherited: only the import knows
        elif isinstance(node, ast.FunctionDef) and node.name == name:
            fn = node
        elif isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == name for a in node.names):
            alias = next(a for a in node.names if (a.asname or a.name) == name)
            source = node.module or ""
            if node.level:
                package = module if path.name == "__init__.py" else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                source = f"{package}.{source}" if source else package
            return _static_parameters(f"{source}.{alias.name}", depth + 1)
        if fn is not None:
            a = fn.args
            params = {arg.arg: ast.unparse(arg.annotation) if arg.annotation else ""
                      for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs]}
            params.pop("self", None)
            return {"**": ""} if a.kwarg is not None else params
    return None


def _check_arguments(node: DictConfig, key: str, injected: tuple[str, ...] = ()) -> None:
    """Every key of a constructor group must be an argument of its ``_target_``: read from the source when
    possible (no import), else from the imported signature."""
    target = node.get("_target_")
    if target is None:
        raise ConfigError(f"{key}: missing _target_")
    params = _static_parameters(target)
    if params is None:
        try:
            fn = get_method(target)
        except Exception as err:  # hydra raises its own InstantiationException types
            raise ConfigError(f"{key}._target_={target!r}: cannot be imported ({err})") from None
        signature = inspect.signature(fn).parameters
        if any(p.kind == p.VAR_KEYWORD for p in signature.values()):
            return
        params = {name: p.annotation for name, p in signature.items()}
    if "**" in params:
        return
    for name in node:
        if name in ("_target_", "_partial_", "_recursive_", "_convert_", "_args_"):
            continue
        if name not in params:
            raise ConfigError(f"{key}.{name}: not an argument of {target} (expected one of {sorted(params)})")
        if name in injected:
            raise ConfigError(f"{key}.{name}: set by the engine, not by config")
        _check_type(f"{key}.{name}", node[name], params[name])


SCALARS = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def _check_type(key: str, value, annotation) -> None:
    """A constructor argument annotated int, float, bool or str (optionally "| None") must hold one."""
    text = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    text = str(text).replace("typing.", "")
    if text.startswith("Optional[") and text.endswith("]"):
        text = f"{text[9:-1]} | None"
    parts = [p.strip() for p in text.split("|")]
    optional = "None" in parts
    kinds = [p for p in parts if p != "None"]
    if len(kinds) != 1 or kinds[0] not in SCALARS or (value is None and optional):
        return
    expected = SCALARS[kinds[0]]
    if value is None or (isinstance(value, bool) and bool not in expected) or not isinstance(value, expected):
        noun = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}[kinds[0]]
        raise ConfigError(f"{key}={value!r}: expected {noun}")


def _check_sources(d: DictConfig) -> None:
    """data.sources, data.format and data.id_map: values a read would refuse, refused before any work."""
    if d.path and d.sources:
        raise ConfigError(f"data.path={d.path} and data.sources are both set: give one log as data.path, or every "
                          "source (that one included) in data.sources")
    if d.attributes.model and not d.attributes.path:
        raise ConfigError("data.attributes.model=true needs data.attributes.path (the customers table whose "
                          "columns the model reads)")
    formats = ("auto", "parquet", "csv")
    if d.format not in formats:
        raise ConfigError(f"data.format={d.format!r}: expected one of {list(formats)}")
    if d.id_map.unmapped not in ("drop", "keep"):
        raise ConfigError(f"data.id_map.unmapped={d.id_map.unmapped!r}: expected 'drop' or 'keep'")
    fields = list(Columns.__dataclass_fields__)
    for i, source in enumerate(d.sources):
        if source.format not in formats:
            raise ConfigError(f"data.sources[{i}].format={source.format!r}: expected one of {list(formats)}")
        unknown = sorted(set(source.columns) - set(fields))
        if unknown:
            raise ConfigError(f"data.sources[{i}].columns.{unknown[0]}: no such field (expected {fields})")
        if source.map_ids and not d.id_map.path:
            raise ConfigError(f"data.sources[{i}].map_ids=true needs data.id_map.path (the table of its keys -> "
                              "customer_id)")


def validate(cfg: DictConfig) -> None:
    """Fail before any work, naming the key, when the config cannot run."""
    if cfg.stage not in STAGES:
        raise ConfigError(f"stage={cfg.stage!r}: expected one of {list(STAGES)}")
    if cfg.data.on_bad_rows not in ("drop", "fail"):
        raise ConfigError(f"data.on_bad_rows={cfg.data.on_bad_rows!r}: expected 'drop' or 'fail'")
    for key in QUALITY_LIMITS:
        if not 0.0 <= cfg.data[key] <= 1.0:
            raise ConfigError(f"data.{key}={cfg.data[key]}: expected a share of rows in [0, 1]")
    this_year = time.gmtime().tm_year
    if not 1 <= cfg.data.min_year <= this_year:
        raise ConfigError(f"data.min_year={cfg.data.min_year}: expected a year between 1 and {this_year}")
    _check_sources(cfg.data)
    k = cfg.segment.k
    if not (k == "auto" or (isinstance(k, int) and k >= 1)):
        raise ConfigError(f"segment.k={k!r}: expected a positive integer or 'auto'")
    if cfg.represent.kind not in ("hybrid", "sequence"):
        raise ConfigError(f"represent.kind={cfg.represent.kind!r}: expected 'hybrid' or 'sequence'")
    if cfg.represent.value not in ("ridge+forecast", "ridge"):
        raise ConfigError(f"represent.value={cfg.represent.value!r}: expected 'ridge+forecast' or 'ridge'")
    if cfg.represent.value_scale not in ("linear+log", "linear", "log"):
        raise ConfigError(f"represent.value_scale={cfg.represent.value_scale!r}: expected 'linear+log', 'linear' "
                          "or 'log'")
    if not 0.0 <= cfg.represent.value_weight < 1.0:
        raise ConfigError(f"represent.value_weight={cfg.represent.value_weight}: expected a number in [0, 1)")
    if cfg.forecast.horizon_days <= 0:
        raise ConfigError(f"forecast.horizon_days={cfg.forecast.horizon_days}: expected > 0")
    if cfg.forecast.discount_rate < 0:
        raise ConfigError(f"forecast.discount_rate={cfg.forecast.discount_rate}: expected an annual rate >= 0")
    if cfg.horizon_days is not None and cfg.horizon_days <= 0:
        raise ConfigError(f"horizon_days={cfg.horizon_days}: expected a number of days > 0")
    unknown = set(cfg.evaluate.sections) - {"lookalike", "segments", "forecast", "recommend"}
    if unknown:
        raise ConfigError(f"evaluate.sections: unknown {sorted(unknown)}; expected lookalike, segments, forecast, "
                          "recommend")
    r = cfg.recommend
    if r.n < 1:
        raise ConfigError(f"recommend.n={r.n}: expected at least 1 item per customer")
    if r.horizon_days <= 0:
        raise ConfigError(f"recommend.horizon_days={r.horizon_days}: expected > 0")
    if r.exclude_recent_days < 0:
        raise ConfigError(f"recommend.exclude_recent_days={r.exclude_recent_days}: expected >= 0")
    if cfg.stage == "evaluate" and cfg.data.cutoff is None:
        raise ConfigError("data.cutoff: stage=evaluate needs a cutoff (train before it, score after it)")
    _check_arguments(cfg.model, "model", injected=("vocab_sizes", "spend_scale", "unit", "attributes"))
    _check_arguments(cfg.model.encoder, "model.encoder", injected=("dim",))
    _check_arguments(cfg.trainer, "trainer")
    _check_arguments(cfg.loader, "loader", injected=("store", "horizon_days", "as_of", "unit"))
    _check_arguments(cfg.index, "index", injected=("embeddings", "ids"))
