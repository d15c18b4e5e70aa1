"""The peer: pytorch-lifestream (ptls 0.6.0) on the same generated event log, its own figures as JSON.

    /tmp/ptls-venv/bin/python bench/lifestream_peer.py --log EVENTS.parquet [--steps 50] [--threads N]

Run with the peer's own virtual environment (it cannot share ours: ptls 0.6.0 pins its own stack), made by

    python3 -m venv /tmp/ptls-venv && /tmp/ptls-venv/bin/pip install torch==2.13.0 \\
        && /tmp/ptls-venv/bin/pip install pytorch-lifestream==0.6.0 distributed

(``python bench/run.py --peer`` does this). Imports nothing of ours. Measures, the way ptls's own CoLES
tutorial does it:

- preprocessing events/s: ``PandasDataPreprocessor.fit_transform`` of the log's DataFrame (the Parquet read
  is timed apart);
- CoLES training customers/s and events/s: ``RnnSeqEncoder`` (GRU, hidden 128) over a ``TrxEncoder`` (four
  categorical fields of 32 dims, log-scaled amount and quantity), ``CoLESModule`` with its default loss,
  ``ColesDataset`` with ``SampleSlices(split_count=4, cnt_min=16, cnt_max=64)``, 64 customers per batch,
  ``Trainer.fit`` timed per step after a warm-up; events are the valid events of the slices;
- embedding customers/s: ``InferenceModule`` under ``Trainer.predict`` over every customer's history (the last
  ``--max-len`` events, as our pipeline embeds), 512 per batch, pandas output concatenated;
- peak RSS of the whole process.

Prints one JSON line; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from functools import partial

CATEGORICAL = ("event_type", "item_id", "category", "channel")
NUMERIC = ("amount", "quantity")
HIDDEN = 128
FIELD_DIM = 32
SPLITS, CNT_MIN, CNT_MAX = 4, 16, 64


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def preprocess(path: str) -> tuple[list[dict], dict]:
    """ptls records (one dict of feature tensors per customer) and the timings of reading and preprocessing."""
    import pandas as pd
    from ptls.preprocessing import PandasDataPreprocessor

    t0 = time.perf_counter()
    df = pd.read_parquet(path, columns=["customer_id", "ts", *CATEGORICAL, *NUMERIC])
    df["ts"] = df["ts"].dt.tz_localize(None)  # ptls converts through naive datetime64[ns]
    read = time.perf_counter() - t0
    preprocessor = PandasDataPreprocessor(
        col_id="customer_id",
        col_event_time="ts",
        event_time_transformation="dt_to_timestamp",
        cols_category=list(CATEGORICAL),
        category_transformation="frequency",
        cols_numerical=list(NUMERIC),
        return_records=True,
    )
    t0 = time.perf_counter()
    records = preprocessor.fit_transform(df)
    seconds = time.perf_counter() - t0
    vocab = {f: int(max(r[f].max() for r in records)) + 1 for f in CATEGORICAL}
    return records, {
        "events": len(df),
        "customers": len(records),
        "read_s": round(read, 3),
        "preprocess_s": round(seconds, 3),
        "preprocess_events_per_s": round(len(df) / seconds),
        "vocab": vocab,
    }


def seq_encoder(vocab: dict):
    from ptls.nn import RnnSeqEncoder, TrxEncoder

    trx = TrxEncoder(
        embeddings={f: {"in": vocab[f] + 1, "out": FIELD_DIM} for f in CATEGORICAL},
        numeric_values={f: "log" for f in NUMERIC},
    )
    return RnnSeqEncoder(trx_encoder=trx, hidden_size=HIDDEN, type="gru")


def train(records: list[dict], vocab: dict, steps: int, warmup: int) -> tuple[object, dict]:
    """CoLES fit for ``steps`` steps; figures over the steps after ``warmup``."""
    import pytorch_lightning as pl
    import torch
    from ptls.data_load.datasets import MemoryMapDataset
    from ptls.frames import PtlsDataModule
    from ptls.frames.coles import ColesDataset, CoLESModule
    from ptls.frames.coles.split_strategy import SampleSlices

    class StepClock(pl.Callback):
        def __init__(self):
            self.ends, self.events, self.customers = [], [], []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.ends.append(time.perf_counter())
            x, labels = batch
            self.events.append(int(x.seq_lens.sum()))
            self.customers.append(int(labels.unique().numel()))

    encoder = seq_encoder(vocab)
    module = CoLESModule(
        seq_encoder=encoder,
        optimizer_partial=partial(torch.optim.Adam, lr=0.002),
        lr_scheduler_partial=partial(torch.optim.lr_scheduler.StepLR, step_size=30, gamma=0.9),
    )
    data = PtlsDataModule(
        train_data=ColesDataset(
            MemoryMapDataset(data=records),
            splitter=SampleSlices(split_count=SPLITS, cnt_min=CNT_MIN, cnt_max=CNT_MAX),
        ),
        train_batch_size=64,
        train_num_workers=0,
    )
    clock = StepClock()
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[clock],
    )
    t0 = time.perf_counter()
    trainer.fit(module, data)
    wall = time.perf_counter() - t0
    warmup = max(1, min(warmup, len(clock.ends) - 1))
    seconds = clock.ends[-1] - clock.ends[warmup - 1]
    events, customers = sum(clock.events[warmup:]), sum(clock.customers[warmup:])
    return encoder, {
        "train_steps": len(clock.ends) - warmup,
        "train_warmup_steps": warmup,
        "train_s": round(seconds, 3),
        "train_fit_wall_s": round(wall, 3),
        "train_events": events,
        "train_events_per_s": round(events / seconds),
        "train_customers_per_s": round(customers / seconds, 1),
    }


def embed(records: list[dict], encoder, max_len: int) -> dict:
    """Embeddings of every customer through InferenceModule + Trainer.predict, as ptls's tutorial does."""
    import pandas as pd
    import pytorch_lightning as pl
    import torch
    from ptls.data_load.datasets import MemoryMapDataset
    from ptls.data_load.iterable_processing import ISeqLenLimit
    from ptls.data_load.utils import collate_feature_dict
    from ptls.frames.inference_module import InferenceModule

    t0 = time.perf_counter()
    loader = torch.utils.data.DataLoader(
        MemoryMapDataset(data=records, i_filters=[ISeqLenLimit(max_seq_len=max_len)]),
        collate_fn=collate_feature_dict,
        shuffle=False,
        batch_size=512,
        num_workers=0,
    )
    module = InferenceModule(model=encoder, pandas_output=True, model_out_name="emb")
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    frames = trainer.predict(module, loader)
    embeddings = pd.concat(frames, axis=0)
    seconds = time.perf_counter() - t0
    return {
        "embed_s": round(seconds, 3),
        "embed_customers": len(embeddings),
        "embed_customers_per_s": round(len(embeddings) / seconds, 1),
        "embed_max_len": max_len,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", required=True, help="the events.parquet our benchmark generated")
    parser.add_argument("--steps", type=int, default=50, help="CoLES training steps (64 customers each)")
    parser.add_argument("--warmup", type=int, default=5, help="training steps left out of the timing")
    parser.add_argument(
        "--max-len", type=int, default=256, help="events per customer embedded (the last ones)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    import ptls
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rss_imports = rss_mb()
    records, result = preprocess(args.log)
    rss_pre = rss_mb()
    encoder, training = train(records, result["vocab"], args.steps, args.warmup)
    result.update(training)
    result.update(embed(records, encoder, args.max_len))
    result.update(
        peak_rss_mb=round(rss_mb(), 1),
        rss_after_imports_mb=round(rss_imports, 1),
        rss_after_preprocess_mb=round(rss_pre, 1),
        threads=torch.get_num_threads(),
        ptls=getattr(ptls, "__version__", "0.6.0"),
        torch=torch.__version__,
        python=sys.version.split()[0],
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
