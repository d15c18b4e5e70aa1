"""The stages of a training run, callable from train.py and tests: data, fit, embed, segment, bundle."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from engine.bundle.bundle import TOMBSTONES, Bundle, read_tombstones
from engine.bundle.ledger import Ledger
from engine.bundle.writer import BundleError, BundleWriter, apply_erasures, embeddings_table, read_embeddings
from engine.data import SequenceStore, load_store
from engine.data.attributes import check_spec as check_attribute_spec
from engine.data.checks import QUALITY_LIMITS, check_columns, check_purchases, check_quality
from engine.data.events import resolve_files
from engine.data.memory import release_freed_memory
from engine.data.quality import summary as quality_summary
from engine.data.summary import customer_summary
from engine.embed.writer import embed_base, forecast_table
from engine.evaluate import evaluate_run, markdown_to_html
from engine.forecast import baselines
from engine.forecast.process import COLUMNS as PROCESS_COLUMNS
from engine.forecast.process import Process
from engine.index.index import save_index
from engine.index.signature import UNTUNED
from engine.index.tuning import Tuning, tune
from engine.inputs import (
    Attributes,
    attribute_spec,
    attributes_markdown,
    event_log_spec,
    load_attributes,
    unknown_attributes,
)
from engine.model.datamodule import forecast_context
from engine.model.head import fit_head
from engine.model.io import MODEL_FILE, load_model, save_model
from engine.recommend.candidates import Filters
from engine.recommend.items import ItemStats
from engine.recommend.recommender import DIRECTORY as RECOMMENDER_DIRECTORY
from engine.recommend.recommender import (
    NotLearnable,
    Recommender,
    fit_recommender,
    recommend_base,
    sequence_embeddings,
)
from engine.recommend.segments import promote_markdown
from engine.represent import FILE as REPRESENTATION_FILE
from engine.represent import Representation
from engine.segment.describe import describe as describe_segments
from engine.segment.describe import descriptions as segment_descriptions
from engine.segment.hierarchy import Hierarchy, build_hierarchy, level_columns
from engine.segment.kmeans import assign, choose_k, match_to_previous, spherical_kmeans
from engine.segment.profiles import segment_profiles
from engine.segment.report import write_report

log = logging.getLogger(__name__)

MIN_FORECAST_BUYERS = 50
CALIBRATION_CUSTOMERS = 20_000  # a sample: the calibration embeds it twice
HEAD_PAIRS = 200_000  # forecast pairs the head is fitted on, at most (engine.model.head)
CONTEXT_SAMPLE = 10_000  # customers whose forecast context sets its standardisation
CALIBRATION_RANGE = (0.5, 2.0)  # calibration factors outside it are flagged
QUALITY_FILE = "data_quality.json"
ATTRIBUTES_FILE = "attributes.json"  # the attribute encoder the model was trained with (engine.data.attributes)
SEGMENT_ATTRIBUTES_FILE = "segment_attributes.json"


@dataclass
class Data:
    """A loaded base: the store to embed, what ingest reported, and the as-of time of its history."""

    store: SequenceStore
    info: dict
    as_of: int
    future: SequenceStore | None = None  # with data.cutoff: the same customers' events from the cutoff on
    quality: dict | None = None  # data_quality.json (engine.data.quality), with the thresholds it passed
    attributes: Attributes | None = None  # data.attributes; the store holds their model inputs (store.attributes)


def parse_time(value) -> int | None:
    """Epoch seconds from a config value (ISO 8601 string or number), None when unset."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return int(value)
    return int(np.datetime64(str(value).rstrip("Z"), "s").astype(np.int64))


def events_path(cfg: DictConfig) -> str:
    """data.path, or the embedded default: a generated log written once under ``work_dir``."""
    if cfg.data.path:
        return str(cfg.data.path)
    from engine.data.synthetic import SyntheticConfig, write

    target = Path(cfg.work_dir) / "synthetic" / _digest(OmegaConf.to_container(cfg.data.synthetic))
    if not (target / "events.parquet").exists():
        log.info("no data.path given: generating the embedded default event log in %s", target)
        write(SyntheticConfig(**cfg.data.synthetic), target)
    return str(target / "events.parquet")


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def fingerprint(files: list[str]) -> str:
    """sha256 over each input file's name, size and modification time."""
    stats = [(os.path.abspath(f), os.path.getsize(f), int(os.path.getmtime(f))) for f in files]
    return hashlib.sha256(json.dumps(stats).encode()).hexdigest()


def load_data(cfg: DictConfig, vocabs: dict | None = None, attributes: dict | None = None) -> Data:
    """Read, validate and pack the event log, and stop on a data-quality figure over its threshold; with
    data.cutoff, keep only the history before it. ``vocabs`` and ``attributes`` (an attribute encoder's
    dict): a trained model's own."""
    d = cfg.data
    if d.attributes.path:  # a wrong path or column name fails now, not after the log is read
        check_attribute_spec(attribute_spec(cfg))
    spec = event_log_spec(cfg, None if cfg.data.sources and not cfg.data.path else events_path(cfg))
    for source in spec.all_sources():
        check_columns(resolve_files(source.path, source.format), source.columns, d.strict, source.format)
    store, report = load_store(spec, min_count=d.min_count, vocabs=vocabs)
    quality = {**report.quality.to_dict(), "thresholds": {key: d[key] for key in QUALITY_LIMITS}}
    log.info("data quality: %s (data_quality.json)", quality_summary(quality))
    check_quality(quality, quality["thresholds"], {s.name: s.columns for s in spec.all_sources()})
    check_purchases(store, spec.purchase_types, d.strict)
    erased = erased_ids(cfg)
    if erased:
        gone = store.customer_index(erased)
        keep = np.setdiff1d(np.arange(store.n_customers), gone[gone >= 0])
        log.info("leaving out %d erased customer(s) (tombstones of earlier bundles)", store.n_customers - len(keep))
        store = store.take(keep)
    cutoff = parse_time(d.cutoff)
    future = None
    if cutoff is not None:
        history = store.before(cutoff)
        rows = np.flatnonzero(history.lengths() > 0)
        if len(rows) == 0:
            raise ValueError(f"data.cutoff={d.cutoff}: no events before the cutoff in {spec.where}")
        store, future = history.take(rows), store.after(cutoff).take(rows)
    as_of = cutoff if cutoff is not None else store.time_range()[1] + 1
    log.info("%s -> %d customers, %d events", report.summary(), store.n_customers, store.n_events)
    customer_attributes = load_attributes(cfg, store, attributes)
    release_freed_memory()
    inputs = report.files + ([spec.id_map.path] if spec.id_map is not None else [])
    info = {"path": spec.where, "files": report.files, "fingerprint": fingerprint(inputs),
            "rows_read": report.rows_read, "dropped_null_customer": report.dropped_null_customer,
            "dropped_null_ts": report.dropped_null_ts, "dropped_null_event_type": report.dropped_null_event_type,
            "dropped_bad_ts": report.dropped_bad_ts, "dropped_bad_customer": report.dropped_bad_customer,
            "duplicates_removed": report.duplicates_removed,
            "dropped_unmapped_customer": report.dropped_unmapped_customer,
            "dropped_conflicting_customer": report.dropped_conflicting_customer,
            "cutoff": cutoff}
    return Data(store, info, as_of, future, quality, customer_attributes)


def datamodule(cfg: DictConfig, data: Data, spend_scale: float | None = None, unit: str | None = None):
    """The loader over data.store; ``spend_scale`` and the transaction ``unit``: a trained model's own."""
    horizon = cfg.forecast.horizon_days if cfg.forecast.weight > 0 else None
    dm = instantiate(cfg.loader, _partial_=True)(store=data.store, horizon_days=horizon, as_of=data.as_of,
                                                 unit=unit)
    if spend_scale is not None:
        dm.spend_scale = dm.train_collate.spend_scale = spend_scale
    return dm


def trainer(cfg: DictConfig, **overrides) -> pl.Trainer:
    return instantiate(cfg.trainer, **overrides)


def fit(cfg: DictConfig, data: Data):
    """Train the encoder on the store; returns (model, datamodule, trainer)."""
    pl.seed_everything(cfg.seed, workers=True)
    dm = datamodule(cfg, data)
    if len(dm.train_rows) < 2 or len(dm.val_rows) == 0:  # contrastive batches need 2, the validation 1
        raise ValueError(
            f"fit: the log has {data.store.n_customers} customer(s), {len(dm.train_rows)} to train the encoder on "
            f"and {len(dm.val_rows)} to validate it (loader.val_fraction={cfg.loader.get('val_fraction', 0.1)}); "
            "it needs at least 2 and 1: use a larger log (segments of a handful of customers say little)")
    vocab_sizes = [len(data.store.vocabs[f]) for f in ("event_type", "item_id", "category", "channel")]
    width = 0 if data.store.attributes is None else data.store.attributes.shape[1]
    model = instantiate(cfg.model, vocab_sizes=vocab_sizes, spend_scale=dm.spend_scale, unit=dm.unit,
                        attributes=width, _convert_="all")
    if width:  # what the head reads for a customer the attributes table does not know
        model.attribute_unknown.copy_(torch.from_numpy(unknown_attributes(data.store, data.attributes)))
    if cfg.forecast.weight > 0:
        check_forecast_data(cfg, data)
        # a sample: the standardisation needs no more, and the context of a whole base costs memory
        sample = np.sort(np.random.default_rng(cfg.seed).permutation(data.store.n_customers)[:CONTEXT_SAMPLE])
        part = data.store.take(sample)
        model.set_context_scale(forecast_context(None, part, np.arange(part.n_customers), part.offsets[1:],
                                                 np.full(part.n_customers, data.as_of), dm.unit))
        log.info("forecast: transactions counted per %s; windows of %g days to the whole log",
                 dm.unit, dm.train_collate.min_window / 86400)
    if cfg.compile and hasattr(model.encoder, "forward_packed"):
        log.warning("compile=true: the GRU encoder runs cuDNN on CUDA and its own packed recurrence on the CPU; "
                    "torch.compile is not applied to it (it is to the Transformer encoder)")
    elif cfg.compile:
        model.encoder.compile()  # in place: the state dict keeps its keys, so bundles load without torch.compile
    run = trainer(cfg)
    run.fit(model, datamodule=dm, ckpt_path=cfg.ckpt_path)
    best = getattr(run.checkpoint_callback, "best_model_path", "") if run.checkpoint_callback else ""
    if best and cfg.restore_best:
        log.info("restoring the best checkpoint %s", best)
        state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]  # plain data: runs no code
        model.load_state_dict(state)
    if cfg.forecast.weight > 0:
        model.cpu()
        rows, val_rows = head_rows(dm, cfg.seed)
        fit_head(model, data.store, rows, val_rows, dm.train_collate,
                 {"accelerator": cfg.trainer.accelerator, "devices": 1,
                  "enable_progress_bar": cfg.trainer.enable_progress_bar},
                 epochs=cfg.forecast.head_epochs, seed=cfg.seed)
    release_freed_memory()
    return model, dm, run


def head_rows(dm, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The customers the forecasting head is fitted on (train, validation): all of them up to HEAD_PAIRS
    pairs at loader.forecast_samples each, else a seeded sample with at least 4 pairs each (a large base
    teaches the head more through more customers than through more cutoffs of the same ones). Sets the
    collate's pairs per customer."""
    rng = np.random.default_rng(seed)
    collate = dm.train_collate
    collate.forecast_samples = int(np.clip(HEAD_PAIRS // max(len(dm.train_rows), 1), 4, collate.forecast_samples))
    most = HEAD_PAIRS // collate.forecast_samples

    def sample(rows: np.ndarray, n: int) -> np.ndarray:
        return rows if len(rows) <= n else np.sort(rng.choice(rows, n, replace=False))

    return sample(dm.train_rows, most), sample(dm.val_rows, max(most // 9, 1))


def check_forecast_data(cfg: DictConfig, data: Data) -> None:
    """A forecast needs customers who bought and a log long enough to show what they do next: fail before
    training otherwise, naming what is missing, rather than ship an untrained head."""
    start, end = data.store.time_range()
    span_days = (end - start) / 86400
    buyers = int((np.bincount(data.store.customer_rows()[data.store.is_purchase()],
                              minlength=data.store.n_customers) > 0).sum())
    if span_days < 14 or buyers < MIN_FORECAST_BUYERS:
        raise ValueError(
            f"forecast: the log spans {span_days:.1f} days with {buyers} customers who bought; learning a "
            f"forecast needs at least 14 days and {MIN_FORECAST_BUYERS} buyers (use a longer or larger log, "
            "or forecast.weight=0 to train without a forecast)")


def calibrate_forecast(cfg: DictConfig, model, data: Data, spend_scale: float) -> None:
    """Settle the fitted head against the latest window of the training data (forecast.horizon_days, or
    half the log when that is shorter), on a sample of the customers with history before it:

    - the drop-out per day past the log's span (engine.forecast.process): the decline of the sample's mean
      p_alive from the window's start to the data's end;
    - with forecast.calibrate, a scale on transactions and spend so that predicted totals over the window
      equal the realised ones: corrects the bias of a head fitted over older periods when the shop's
      overall activity drifts (the fit is unbiased on its training mix of cutoffs, not at the end)."""
    start, _ = data.store.time_range()
    window = min(cfg.forecast.horizon_days * 86400, (data.as_of - start) / 2)
    cutoff = int(data.as_of - window)
    history = data.store.before(cutoff)
    rows = np.flatnonzero(history.lengths() > 0)
    if len(rows) > CALIBRATION_CUSTOMERS:
        rows = np.sort(np.random.default_rng(cfg.seed).choice(rows, CALIBRATION_CUSTOMERS, replace=False))
    if len(rows) < 50:
        log.warning("forecast calibration skipped: %d customers have history before the last %.0f days "
                    "(at least 50 needed); no drop-out past the log's span", len(rows), window / 86400)
        return
    then = embed(cfg, model, Data(history.take(rows), {}, cutoff), spend_scale)
    now = embed(cfg, model, Data(data.store.take(rows), {}, data.as_of), spend_scale)
    if then is None or now is None:
        return
    survival = float(np.mean(now["p_alive"]) / max(float(np.mean(then["p_alive"])), 1e-9))
    model.decay_per_day.fill_(max(0.0, -np.log(min(survival, 1.0))) / (window / 86400))
    log.info("forecast: mean p_alive %.3f -> %.3f over the last %.0f days: drop-out %.5f per day past the "
             "log's %.0f days", np.mean(then["p_alive"]), np.mean(now["p_alive"]), window / 86400, model.decay,
             model.span)
    if not cfg.forecast.calibrate:
        return
    answer = process_of(model, then).answer(window / 86400)
    truth = baselines.future_truth(data.store.after(cutoff, data.as_of).take(rows), unit=model.hparams.unit)
    predicted = np.array([answer["expected_purchases"].sum(), answer["expected_spend"].sum()], dtype=np.float64)
    actual = np.array([truth["purchases"].sum(), truth["spend"].sum()])
    factor = np.where(predicted > 0, actual / np.maximum(predicted, 1e-9), 1.0).clip(0.2, 5.0)
    model.calibration.copy_(torch.as_tensor(factor, dtype=model.calibration.dtype) * model.calibration)
    log.info("forecast calibrated on the last %.0f days: transactions x%.3f, spend x%.3f",
             window / 86400, factor[0], factor[1])
    if calibration_flagged(factor):
        log.warning("forecast calibration outside [%g, %g] (transactions x%.3f, spend x%.3f): the head's fit "
                    "and the last %.0f days disagree; treat the forecast with care (it is flagged in the "
                    "manifest and the report)", *CALIBRATION_RANGE, factor[0], factor[1], window / 86400)


def calibration_flagged(factor) -> bool:
    """A calibration factor outside CALIBRATION_RANGE: the forecast needed a large correction."""
    low, high = CALIBRATION_RANGE
    return bool(np.any((np.asarray(factor) < low) | (np.asarray(factor) > high)))


def process_of(model, arrays: dict[str, np.ndarray]) -> Process:
    """The purchase process of the embedded customers (the head's parameters, the model's decay and span)."""
    return Process.from_columns(arrays, model.decay, model.span)


def add_forecast(cfg: DictConfig, model, arrays: dict[str, np.ndarray]) -> None:
    """Add the forecast at forecast.horizon_days to arrays (expected transactions and spend, p_buy,
    p_churn, p_alive, lifetime_value), when the model has a forecasting head."""
    if "rate" in arrays:
        arrays.update(process_of(model, arrays).table(cfg.forecast.horizon_days, cfg.forecast.discount_rate))


def embed(cfg: DictConfig, model, data: Data, spend_scale: float, dm=None) -> dict[str, np.ndarray] | None:
    """Embed every customer of the store exactly once (rank 0 gets the merged arrays). ``dm``: the training
    datamodule of the same data, reused instead of building another (its spend scale included)."""
    dm = dm if dm is not None else datamodule(cfg, data, spend_scale, model.hparams.get("unit"))
    run = trainer(cfg, logger=False, enable_checkpointing=False, callbacks=[])
    # each rank empties its own part before writing; the merge reads this run's ranks only
    parts = Path(cfg.work_dir) / "embed-parts"
    arrays = embed_base(run, model, dm, parts)
    if arrays is not None:  # merged: the parts would keep every customer's vector (erased ones too) on disk
        shutil.rmtree(parts, ignore_errors=True)
    return arrays


def represent(cfg: DictConfig, data: Data, arrays: dict[str, np.ndarray], fitted: Representation | None = None,
              process: Process | None = None) -> Representation | None:
    """Replace arrays["embedding"] by the customer vector of ``represent.kind`` (the encoder's own is kept as
    arrays["sequence"], the value model's expected spend as arrays["predicted_spend"]); the fitted
    representation is returned (None for kind=sequence). ``process``: the forecasting head's purchase process
    of the same customers, whose expected spend the value blends in (represent.value=ridge+forecast)."""
    arrays["sequence"] = arrays["embedding"]
    if fitted is None and cfg.represent.kind == "sequence":
        return None
    if fitted is None:
        r = cfg.represent
        # the value model replays the horizon before as_of: at most half the log, so a long question still fits
        start, _ = data.store.time_range()
        horizon = min(cfg.forecast.horizon_days, (data.as_of - start) / 2 / 86400)
        if r.value == "ridge+forecast" and process is None:
            log.info("represent.value=ridge+forecast: no forecasting head (forecast.weight=0), the value is the "
                     "ridge's alone")
        answer = process.answer(horizon) if r.value == "ridge+forecast" and process is not None else None
        fitted = Representation.fit(data.store, data.as_of, horizon, r.factors, r.value_weight,
                                    r.sequence_weight, r.profile_weight, seed=cfg.seed,
                                    attribute_unknown=unknown_attributes(data.store, data.attributes),
                                    value_scale=r.value_scale, forecast=answer)
    else:  # a bundle's: the forecast over its value model's horizon, when its value blends it in
        blends = float(fitted.value_blend[0]) > 0 and process is not None
        answer = process.answer(float(fitted.horizon_days[0])) if blends else None
    z = fitted.inputs(data.store, data.as_of)  # once, for the value and its place on the vector
    value = fitted.value(data.store, data.as_of, answer, z)
    arrays["embedding"] = fitted.transform(data.store, data.as_of, arrays["sequence"], value, answer, z)
    arrays["predicted_spend"] = value**2
    return fitted


def segment(cfg: DictConfig, embeddings: np.ndarray, previous: Path | None = None):
    """Segments (k-means, stable ids against a previous bundle's centroids) and their hierarchy.

    Returns (centroids float32 [k, d], labels int64 [n], similarity float32 [n], hierarchy)."""
    s = cfg.segment
    k = s.k
    if k == "auto":
        # segments a marketer can act on: at least k_min, and at most one per 1% of the base on average
        k_max = min(s.k_max, max(2, len(embeddings) // 100))
        k, scores = choose_k(embeddings, min(s.k_min, k_max), k_max, seed=cfg.seed)
        log.info("segment.k=auto chose k=%d (silhouette %s)", k, {j: round(v, 3) for j, v in scores.items()})
    centroids, labels = spherical_kmeans(embeddings, int(k), seed=cfg.seed, niter=s.niter, nredo=s.nredo,
                                         progress=s.progress)
    if previous is not None and (previous / "centroids.npy").exists():
        old = np.load(previous / "centroids.npy")
        if old.shape[1] == centroids.shape[1]:
            mapping = match_to_previous(centroids, old)
            reordered = np.zeros((int(mapping.max()) + 1, centroids.shape[1]), dtype=np.float32)
            reordered[mapping] = centroids
            centroids = reordered
            log.info("segment ids matched to the previous bundle's %d segments", len(old))
    labels, similarity = assign(embeddings, centroids)
    sizes = np.bincount(labels, minlength=len(centroids))
    hierarchy = build_hierarchy(centroids, sizes, list(s.levels) if s.levels else None)
    return centroids, labels, similarity, hierarchy


def write_segments(cfg: DictConfig, bundle: BundleWriter, data: Data, embeddings: np.ndarray, centroids,
                   labels, similarity, hierarchy: Hierarchy, forecast: pa.Table | None,
                   predicted_spend: np.ndarray | None = None) -> None:
    """segments.parquet, centroids, hierarchy, profiles, index and the report, into the staged bundle.
    predicted_spend: the value model's (engine.represent), else the forecast's, describes the segments."""
    ids = data.store.customer_ids
    columns = {"customer_id": ids, "segment": labels.astype(np.int64), "similarity": similarity}
    columns.update(level_columns(labels, hierarchy))
    bundle.write_table("segments.parquet", pa.table(columns))
    np.save(bundle.path / "centroids.npy", centroids)
    (bundle.path / "hierarchy.json").write_text(json.dumps(hierarchy.to_dict()))
    summary = customer_summary(data.store, data.as_of)
    if forecast is not None:
        for name in ("expected_purchases", "expected_spend", "p_alive", "p_churn", "lifetime_value"):
            summary = summary.append_column(name, forecast[name])
        summary = summary.append_column("likely_to_lapse", pc.greater(forecast["p_churn"], 0.5))  # mean: share
    profiles = segment_profiles(labels, len(centroids), summary.drop(["customer_id"]), top_n=cfg.segment.top_n)
    value = predicted_spend
    if value is None and forecast is not None:
        value = forecast["expected_spend"].to_numpy()
    described = describe_segments(data.store, labels, len(centroids), data.as_of, value, top_n=cfg.segment.top_n)
    for name in described.column_names[1:]:
        profiles = profiles.append_column(name, described[name])
    who = None
    (bundle.path / SEGMENT_ATTRIBUTES_FILE).unlink(missing_ok=True)  # a base bundle's, of other segments
    if data.attributes is not None:  # who each segment's customers are: the attributes' values by lift
        who = data.attributes.encoder.describe(data.attributes.table, ids, labels, len(centroids))
        (bundle.path / SEGMENT_ATTRIBUTES_FILE).write_text(json.dumps(who, indent=1))
        profiles = profiles.append_column("attributes", pa.array([json.dumps(w["columns"]) for w in who]))
    horizon = bundle.manifest.get("horizon_days")
    profiles = profiles.append_column("description", pa.array(segment_descriptions(profiles, horizon)))
    bundle.write_table("profiles.parquet", profiles)
    index = instantiate(cfg.index)(embeddings, np.arange(len(embeddings), dtype=np.int64))
    save_index(index, bundle.path / "index.faiss")
    promote = promote_markdown(data.store, labels, len(centroids))
    (bundle.path / "segment_items.md").write_text(promote + "\n")
    extra = {"What each segment buys more than the base (items bought by at least 5% of it; lift = its share "
             "over the base's): what to promote to it": markdown_to_html(promote)}
    if who is not None:
        extra["Who each segment's customers are (customer attributes: values over-represented in the segment, "
              "lift = its share over the base's, among customers whose value is known)"] = markdown_to_html(
            attributes_markdown(who))
    extra.update({k: markdown_to_html(v) for k, v in bundle.extra_tables.items()})
    extra.update(bundle.extra_html)  # trusted figures (inline PNG) of the evaluation
    quality = bundle.path / QUALITY_FILE  # this run's, or the one of the bundle it started from
    write_report(bundle.path / "report.html", profiles, embeddings, labels, hierarchy,
                 title=f"segment-engine: {len(centroids)} segments of {len(labels):,} customers",
                 extra_tables=extra or None, horizon_days=horizon,
                 expected_spend=None if forecast is None else forecast["expected_spend"].to_numpy(),
                 data_quality=json.loads(quality.read_text()) if quality.exists() else None)
    bundle.manifest["k"] = len(centroids)
    bundle.manifest.setdefault("counts", {})["segments"] = len(centroids)


def tune_lookalike(cfg: DictConfig, data: Data, bundle: BundleWriter) -> None:
    """The signature lookalike's weights for this base (engine.index.tuning on the history alone), kept in the
    manifest's "lookalike" entry, which the service and the audiences read. Stages all, evaluate and embed
    tune; segment, forecast and recommend keep their bundle's entry (the same store)."""
    if cfg.lookalike.tune:
        log.info("lookalike: weighing the signature scorer's parts on the history's last quarter ...")
        tuning = tune(data.store, data.as_of, seed=cfg.seed)
    else:
        tuning = Tuning(UNTUNED, "lookalike.tune=false")
    if tuning.roc_auc is None:
        log.info("lookalike: %s (%s)", tuning.weights, tuning.reason)
    else:
        log.info("lookalike: %s (%s: ROC-AUC %.3f, %.3f untuned, %d tasks)", tuning.weights, tuning.reason,
                 tuning.roc_auc, tuning.default_roc_auc, tuning.tasks)
    bundle.manifest["lookalike"] = tuning.to_dict()


def write_embeddings(bundle: BundleWriter, data: Data, arrays: dict[str, np.ndarray]) -> pa.Table | None:
    """embeddings.parquet, forecast.parquet when the model forecasts, and the store itself."""
    ids = data.store.customer_ids
    bundle.write_table("embeddings.parquet", embeddings_table(ids, arrays["embedding"]))
    forecast = forecast_table(ids, arrays)
    if forecast is not None:
        bundle.write_table("forecast.parquet", forecast)
    data.store.save(bundle.path / "store")
    bundle.manifest["counts"] = {"customers": data.store.n_customers, "events": data.store.n_events}
    bundle.manifest["as_of"] = data.as_of
    return forecast


def ledger(cfg: DictConfig) -> Ledger:
    """The erasure ledger of this run: privacy.ledger, or erasures.jsonl beside out_dir."""
    return Ledger.beside(cfg.out_dir, cfg.privacy.ledger)


def erased_ids(cfg: DictConfig) -> list[str]:
    """Customers erased anywhere this run can know of: the erasure ledger (and the default one beside the
    bundle read, bundle=), and the tombstones of the bundle being replaced (out_dir) or read. Erasure is for
    good, so a new run over an old log must not bring them back."""
    ids: set[str] = set(ledger(cfg).read())
    if cfg.bundle:
        ids.update(Ledger.beside(cfg.bundle).read())
    for path in {Path(cfg.out_dir), Path(cfg.bundle) if cfg.bundle else Path(cfg.out_dir)}:
        if (path / TOMBSTONES).exists():
            ids.update(read_tombstones(path))
    return sorted(ids)


def publish(cfg: DictConfig, base: Path | None = None) -> BundleWriter:
    """The writer of this run's bundle: staged beside out_dir, given the erasures that arrive while it is
    built (the ledger, re-read under its lock just before the swap)."""
    return BundleWriter(cfg.out_dir, base=base, ledger=ledger(cfg))


def carry_tombstones(cfg: DictConfig, bundle: BundleWriter) -> None:
    """The new bundle keeps the erasure log, so every later load and run applies it again."""
    erased = erased_ids(cfg)
    if erased:
        with open(bundle.path / TOMBSTONES, "w") as f:
            f.writelines(json.dumps({"customer_id": c, "carried": True}) + "\n" for c in erased)


def describe(cfg: DictConfig, bundle: BundleWriter, data: Data, model=None, stage: str | None = None) -> None:
    carry_tombstones(cfg, bundle)
    bundle.manifest["stage"] = stage or cfg.stage
    bundle.manifest["config"] = OmegaConf.to_container(cfg, resolve=True)
    bundle.manifest["data"] = data.info
    if data.quality is not None:
        (bundle.path / QUALITY_FILE).write_text(json.dumps(data.quality, indent=1))
    if data.attributes is not None and data.store.attributes is not None:  # what stage=embed encodes alike
        (bundle.path / ATTRIBUTES_FILE).write_text(json.dumps(data.attributes.encoder.to_dict(), indent=1))
    has_head = model is not None and hasattr(model, "head")
    bundle.manifest["horizon_days"] = cfg.forecast.horizon_days if has_head else None
    if has_head:  # what answers other horizons from forecast.parquet's parameters (engine.forecast.process)
        factor = [float(x) for x in model.calibration]
        bundle.manifest["forecast"] = {"horizon_days": cfg.forecast.horizon_days, "decay_per_day": model.decay,
                                       "span_days": model.span, "discount_rate": cfg.forecast.discount_rate,
                                       "unit": model.hparams.unit, "calibration": factor,
                                       "calibration_flagged": calibration_flagged(factor)}
        if calibration_flagged(factor):
            bundle.extra_tables["Forecast warning"] = (
                "| forecast calibration | transactions | spend | note |\n| --- | --- | --- | --- |\n"
                f"| outside [{CALIBRATION_RANGE[0]:g}, {CALIBRATION_RANGE[1]:g}] | x{factor[0]:.3f} | "
                f"x{factor[1]:.3f} | the head's fit and the log's latest window disagree: treat the forecast "
                "with care |")


def recommend_filters(cfg: DictConfig, store: SequenceStore) -> Filters:
    """The recommend.* options as Filters (ValueError naming recommend.categories for a name the log lacks)."""
    r = cfg.recommend
    return Filters.of(store.vocabs["category"], r.exclude_recent_days, r.exclude_returned, r.new_only,
                      list(r.categories) if r.categories is not None else None, "recommend.categories")


def datamodule_split(cfg: DictConfig, data: Data) -> np.ndarray:
    """The rows of the encoder's validation customers (the loader's seeded split of the ids)."""
    from engine.model.datamodule import split_rows

    return split_rows(data.store.customer_ids, cfg.loader.get("val_fraction", 0.1), cfg.seed)[1]


def fit_recommendations(cfg: DictConfig, model, data: Data) -> Recommender | None:
    """The bundle's recommender (engine.recommend), or None, said in the log, when recommend.enabled is
    false or the log cannot teach it."""
    if not cfg.recommend.enabled:
        return None
    unseen = np.zeros(data.store.n_customers, bool)  # the encoder's validation customers: it never trained on them
    unseen[datamodule_split(cfg, data)] = True
    try:
        return fit_recommender(data.store, data.as_of, model, cfg.recommend.horizon_days,
                               {"accelerator": cfg.trainer.accelerator, "devices": 1,
                                "enable_progress_bar": cfg.trainer.enable_progress_bar},
                               cfg.loader.predict_max_len, cfg.seed, unseen=unseen)
    except NotLearnable as err:
        log.warning("%s: this bundle has no recommendations", err)
        return None


def write_recommendations(cfg: DictConfig, bundle: BundleWriter, data: Data, recommender: Recommender,
                          sequence: np.ndarray | None) -> None:
    """items/ (the recommender) and recommendations.parquet (recommend.n per customer) into the bundle."""
    recommender.save(bundle.path / RECOMMENDER_DIRECTORY)
    filters = recommend_filters(cfg, data.store)
    table = recommend_base(recommender, data.store, sequence if filters.new_only else None, data.as_of,
                           cfg.recommend.n, filters)
    bundle.write_table("recommendations.parquet", table)
    bundle.manifest["recommend"] = {"n": cfg.recommend.n, "horizon_days": recommender.horizon_days,
                                    **OmegaConf.to_container(cfg.recommend), **recommender.summary}
    log.info("recommendations: %d items for %d customers (recommendations.parquet)", table.num_rows,
             data.store.n_customers)


def previous_bundle(cfg: DictConfig) -> Path | None:
    path = Path(cfg.bundle) if cfg.bundle else Path(cfg.out_dir)
    return path if (path / "manifest.json").exists() else None


def require_bundle(cfg: DictConfig, stage: str) -> Path:
    path = previous_bundle(cfg)
    if path is None:
        raise BundleError(f"stage={stage} needs an existing bundle: set bundle=DIR "
                          f"(no manifest.json in {cfg.bundle or cfg.out_dir})")
    return path


def run_all(cfg: DictConfig, evaluate: bool = False) -> Path | None:
    """Fit, embed, segment, index and write one bundle to out_dir (with evaluations when ``evaluate``)."""
    data = load_data(cfg)
    model, dm, run = fit(cfg, data)
    if cfg.forecast.weight > 0:
        calibrate_forecast(cfg, model, data, dm.spend_scale)
    arrays = embed(cfg, model, data, dm.spend_scale, dm)
    if arrays is None:
        return None
    add_forecast(cfg, model, arrays)
    representation = represent(cfg, data, arrays, process=process_of(model, arrays) if "rate" in arrays else None)
    result = segment(cfg, arrays["embedding"], previous_bundle(cfg))
    recommender = fit_recommendations(cfg, model, data)
    with publish(cfg) as bundle:
        tune_lookalike(cfg, data, bundle)  # before the evaluation, which scores the weights it chose
        if evaluate:
            evaluate_run(cfg, bundle, data, arrays, labels=result[1],
                         process=process_of(model, arrays) if "rate" in arrays else None,
                         unit=model.hparams.unit, recommender=recommender)
        describe(cfg, bundle, data, model, "evaluate" if evaluate else None)
        save_model(model, cfg.model, data.store.vocabs, bundle.path / MODEL_FILE,
                   extra={"predict_max_len": cfg.loader.predict_max_len})
        if representation is not None:
            representation.save(bundle.path / REPRESENTATION_FILE)
        forecast = write_embeddings(bundle, data, arrays)
        write_segments(cfg, bundle, data, arrays["embedding"], *result, forecast, arrays.get("predicted_spend"))
        if recommender is not None:
            write_recommendations(cfg, bundle, data, recommender, arrays["sequence"])
    return Path(cfg.out_dir)


def run_evaluate(cfg: DictConfig) -> Path | None:
    """Train on the events before data.cutoff, then evaluate on the events after it (and write the bundle).
    Never over a bundle that another stage wrote (one trained on the whole log, maybe served): then the
    evaluation goes to ``<out_dir>-evaluate``, said in the log."""
    out = Path(cfg.out_dir)
    if (out / "manifest.json").exists():
        stage = json.loads((out / "manifest.json").read_text()).get("stage")
        if stage != "evaluate":
            target = out.with_name(out.name + "-evaluate")
            log.warning("stage=evaluate: %s holds a bundle of stage=%s (maybe served): the evaluation, trained "
                        "only up to the cutoff, goes to %s instead (set out_dir to choose)", out, stage, target)
            OmegaConf.update(cfg, "out_dir", str(target), merge=False)
            if Path(cfg.work_dir) == Path(f"{out}.work"):  # the default ${out_dir}.work, already resolved
                OmegaConf.update(cfg, "work_dir", f"{target}.work", merge=False)
    return run_all(cfg, evaluate=True)


def run_fit(cfg: DictConfig) -> Path | None:
    """Train only: the bundle holds the model, vocabularies and store, ready for stage=embed."""
    data = load_data(cfg)
    model, dm, run = fit(cfg, data)
    if cfg.forecast.weight > 0:
        calibrate_forecast(cfg, model, data, dm.spend_scale)
    if not run.is_global_zero:
        return None
    with publish(cfg) as bundle:
        describe(cfg, bundle, data, model)
        save_model(model, cfg.model, data.store.vocabs, bundle.path / MODEL_FILE,
                   extra={"predict_max_len": cfg.loader.predict_max_len})
        data.store.save(bundle.path / "store")
        bundle.manifest["counts"] = {"customers": data.store.n_customers, "events": data.store.n_events}
    return Path(cfg.out_dir)


INHERITED = ("columns", "purchase_types", "return_types", "dedupe", "on_bad_rows", "known_types", "min_year",
             "event_types", "channel", "timezone", "format")


def inherit_data_spec(cfg: DictConfig, source: Path) -> list[str]:
    """Take the bundle's own data spec (column mapping, purchase, return and known types, dedupe, bad rows,
    the earliest year) for each key this run leaves at its default: a refreshed log is read the way the model was trained on. Returns
    the keys taken, each logged."""
    from engine.config import DataSchema

    manifest = json.loads((source / "manifest.json").read_text())
    saved = (manifest.get("config") or {}).get("data") or {}
    defaults = OmegaConf.structured(DataSchema)
    taken = []
    if not cfg.data.path and not cfg.data.sources and saved.get("sources"):  # the same sources, refreshed
        for key in ("sources", "id_map"):
            OmegaConf.update(cfg, f"data.{key}", saved[key], merge=True)  # typed: merged into the schema
            taken.append(key)
        log.info("data.sources (%s) and data.id_map from the bundle %s (set data.path or data.sources to read "
                 "another log)", ", ".join(s["name"] or s["path"] for s in saved["sources"]), source)
    for key in INHERITED:
        current = cfg.data[key]
        if key not in saved or current != defaults[key] or OmegaConf.create({"v": saved[key]}).v == current:
            continue  # set by this run, or the same anyway
        OmegaConf.update(cfg, f"data.{key}", saved[key], merge=True)  # a dict merges into the Columns node
        taken.append(key)
        log.info("data.%s=%s from the bundle %s (set data.%s to override)", key, saved[key], source, key)
    return taken


def run_embed(cfg: DictConfig) -> Path | None:
    """Embed a new or refreshed base with a bundle's model, without retraining. Segments keep the bundle's
    centroids (stable ids: customers are assigned to them) when it has any; otherwise they are built. The log
    is read with the bundle's data spec where this run leaves it at its defaults (inherit_data_spec)."""
    source = require_bundle(cfg, "embed")
    inherit_data_spec(cfg, source)
    model, payload = load_model(source / MODEL_FILE)
    encoder = json.loads((source / ATTRIBUTES_FILE).read_text()) if (source / ATTRIBUTES_FILE).exists() else None
    data = load_data(cfg, vocabs=payload["vocabs"], attributes=encoder)
    if encoder is None and data.store.attributes is not None:  # the bundle's model reads none
        log.info("data.attributes.model: the bundle's model was trained without attributes; they describe the "
                 "segments only")
        data.store.attributes = None
    arrays = embed(cfg, model, data, payload["hparams"]["spend_scale"])
    if arrays is None:
        return None
    add_forecast(cfg, model, arrays)
    if (source / REPRESENTATION_FILE).exists():  # the bundle's own vector, so its centroids still apply
        represent(cfg, data, arrays, Representation.load(source / REPRESENTATION_FILE),
                  process_of(model, arrays) if "rate" in arrays else None)
    recommender = None
    if (source / RECOMMENDER_DIRECTORY / "recommender.json").exists():  # the rankers stay, the items are the new log's
        recommender = Recommender.load(source / RECOMMENDER_DIRECTORY)
        recommender.stats = ItemStats.build(data.store, data.as_of, seed=cfg.seed)
    with publish(cfg, source) as bundle:
        describe(cfg, bundle, data, model)
        tune_lookalike(cfg, data, bundle)  # the new base's history
        shutil.rmtree(bundle.path / "store", ignore_errors=True)
        forecast = write_embeddings(bundle, data, arrays)
        if (source / "centroids.npy").exists():
            centroids = np.load(source / "centroids.npy")
            labels, similarity = assign(arrays["embedding"], centroids)
            hierarchy = Hierarchy.from_dict(json.loads((source / "hierarchy.json").read_text()))
        else:
            centroids, labels, similarity, hierarchy = segment(cfg, arrays["embedding"])
        write_segments(cfg, bundle, data, arrays["embedding"], centroids, labels, similarity, hierarchy, forecast,
                       arrays.get("predicted_spend"))
        if recommender is not None:
            write_recommendations(cfg, bundle, data, recommender, arrays.get("sequence", arrays["embedding"]))
    return Path(cfg.out_dir)


def representation_spend(source: Path, store: SequenceStore, as_of: int, forecast: pa.Table | None,
                         meta: dict | None, process: Process | None = None) -> np.ndarray | None:
    """float64 [n]: the expected spend of the bundle's customer vector (its value model, engine.represent)
    for the store's customers, which describes the segments; None for a bundle without one. A value that
    blends in the forecast reads it from ``process`` (the store's customers' purchase process) when given,
    else from ``forecast`` (forecast.parquet) and ``meta`` (the manifest's entry)."""
    if not (source / REPRESENTATION_FILE).exists():
        return None
    rep = Representation.load(source / REPRESENTATION_FILE)
    if float(rep.value_blend[0]) == 0:
        return rep.expected_spend(store, as_of)
    if process is None:
        order = None if forecast is None else pc.index_in(store.customer_ids, value_set=forecast["customer_id"])
        if order is None or not meta or order.null_count:
            raise BundleError(f"{source}: its customer vector's value blends in the forecast, and "
                              "forecast.parquet or the manifest's forecast entry lacks some of its customers")
        rows = order.to_numpy()
        process = Process.from_columns({k: forecast[k].to_numpy()[rows] for k in PROCESS_COLUMNS},
                                       meta["decay_per_day"], meta["span_days"])
    return rep.expected_spend(store, as_of, process.answer(float(rep.horizon_days[0])))


def run_segment(cfg: DictConfig) -> Path:
    """Re-cluster a bundle's embeddings (segment.k, hierarchy, profiles, index, report)."""
    source = require_bundle(cfg, "segment")
    apply_erasures(source, erased_ids(cfg))  # the ledger's latest: no erased vector shapes the new centroids
    ids, embeddings = read_embeddings(source / "embeddings.parquet")
    store = SequenceStore.open(source / "store")
    manifest = json.loads((source / "manifest.json").read_text())
    data = Data(store, manifest.get("data", {}), manifest.get("as_of") or store.time_range()[1] + 1)
    encoder = json.loads((source / ATTRIBUTES_FILE).read_text()) if (source / ATTRIBUTES_FILE).exists() else None
    data.attributes = load_attributes(cfg, store, encoder)  # the profiles say who each segment is
    forecast = pq.read_table(source / "forecast.parquet") if (source / "forecast.parquet").exists() else None
    with publish(cfg, source) as bundle:
        bundle.manifest["config"] = OmegaConf.to_container(cfg, resolve=True)
        result = segment(cfg, embeddings, source)
        predicted = representation_spend(source, store, data.as_of, forecast, manifest.get("forecast"))
        write_segments(cfg, bundle, data, embeddings, *result, forecast, predicted)
    return Path(cfg.out_dir)


def run_forecast(cfg: DictConfig) -> Path:
    """stage=forecast bundle=B horizon_days=N: the bundle again (out_dir) with its forecast, segment profiles
    and report for an N-day horizon, answered from each customer's fitted purchase process: no retraining
    and no encoder pass. Erased customers stay erased (the bundle's own loading applies its tombstones)."""
    source = require_bundle(cfg, "forecast")
    loaded = Bundle.load(source, erased=erased_ids(cfg))
    meta = loaded.forecast_meta
    c = loaded.customers
    horizon = float(cfg.horizon_days if cfg.horizon_days is not None else meta["horizon_days"])
    process = Process.from_columns({k: c.forecast[k].to_numpy() for k in PROCESS_COLUMNS}, meta["decay_per_day"],
                                   meta["span_days"])
    arrays = process.table(horizon, meta["discount_rate"])
    table = forecast_table(c.forecast["customer_id"], arrays)
    data = Data(c.store, loaded.manifest.get("data", {}), loaded.as_of)
    if c.forecast is None:
        raise BundleError(f"{source}: no forecast.parquet (trained with forecast.weight=0)")
    ids, embeddings = c.ids, c.embeddings
    with publish(cfg, source) as bundle:
        bundle.manifest["horizon_days"] = horizon
        bundle.manifest["forecast"] = {**meta, "horizon_days": horizon}
        bundle.write_table("forecast.parquet", table)
        bundle.write_table("embeddings.parquet", embeddings_table(ids, embeddings))
        bundle.write_table("segments.parquet", c.segments)
        labels, similarity = assign(embeddings, loaded.centroids)
        predicted = representation_spend(source, c.store, data.as_of, c.forecast, meta, process)
        write_segments(cfg, bundle, data, embeddings, loaded.centroids, labels, similarity, c.hierarchy, table,
                       predicted)
    totals = {k: float(np.sum(arrays[k])) for k in ("expected_purchases", "expected_spend", "lifetime_value")}
    log.info("forecast of the next %g days for %d customers (%ss): %.0f transactions, spend %.2f; lifetime "
             "value %.2f (annual discount %g)", horizon, len(ids), meta["unit"], totals["expected_purchases"],
             totals["expected_spend"], totals["lifetime_value"], meta["discount_rate"])
    return Path(cfg.out_dir)


def run_recommend(cfg: DictConfig) -> Path:
    """stage=recommend bundle=B [recommend.n=.. recommend.new_only=..]: the bundle again (out_dir) with
    recommendations.parquet for its customers under these options: no retraining (one encoder pass for the
    model's item scores). Erased customers stay erased (the bundle's own loading applies its tombstones)."""
    source = require_bundle(cfg, "recommend")
    if not (source / RECOMMENDER_DIRECTORY / "recommender.json").exists():
        raise BundleError(f"{source}: no recommender ({RECOMMENDER_DIRECTORY}/): it was trained with "
                          "recommend.enabled=false, its log could not teach one (see its training log), or by an "
                          "older engine; retrain it with stage=all")
    loaded = Bundle.load(source, erased=erased_ids(cfg))
    c = loaded.customers
    recommender = Recommender.load(source / RECOMMENDER_DIRECTORY)
    data = Data(c.store, loaded.manifest.get("data", {}), loaded.as_of)
    sequence = (sequence_embeddings(loaded.model, c.store, loaded.predict_max_len)
                if recommender.index is not None and cfg.recommend.new_only else None)  # new-item lists read it
    with publish(cfg, source) as bundle:
        write_recommendations(cfg, bundle, data, recommender, sequence)
    return Path(cfg.out_dir)
