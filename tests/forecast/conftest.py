"""Stores for the forecast tests: built by hand, generated with a fixed seed, or a seeded sample of the real
grocery log (../shared/data/completejourney beside the repository; tests needing it skip without it)."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from engine.data import Columns, EventLogSpec, load_store
from engine.data.store import build_store
from engine.data.synthetic import SyntheticConfig, generate
from engine.forecast import future_truth, transaction_unit

DAY = 86400
T0 = 1_700_006_400  # a UTC midnight
CJ = Path(__file__).resolve().parents[3] / "shared" / "data" / "completejourney" / "events.parquet"


def build(events):
    """events: [(customer_id, day (float, from T0), event_type, amount or None)] -> SequenceStore."""
    customer, day, kind, amount = zip(*events, strict=True)
    n = len(events)
    table = pa.table(
        {
            "customer_id": pa.array(customer, pa.string()),
            "ts": pa.array(T0 + np.round(np.array(day) * DAY).astype(np.int64)),
            "event_type": pa.array(kind, pa.string()),
            "item_id": pa.array(["i1"] * n, pa.string()),
            "category": pa.array([None] * n, pa.string()),
            "channel": pa.array([None] * n, pa.string()),
            "amount": pa.array(amount, pa.float64()),
            "quantity": pa.array([1.0] * n, pa.float64()),
        }
    )
    return build_store(table, ["purchase"], ["return"])[0]


@pytest.fixture
def make_store():
    return build


@pytest.fixture(scope="session")
def generated():
    """(history, future truth, as_of, unit): 500 generated customers, cutoff day 300, horizon 30 days; customers
    with history before the cutoff only; the unit read from the log ("day": its lines have times of their own)."""
    events, _ = generate(SyntheticConfig(n_customers=500, seed=0))
    events = events.set_column(1, "ts", pc.cast(events["ts"], pa.int64()))
    events = events.set_column(6, "quantity", pc.cast(events["quantity"], pa.float64()))
    store = build_store(events, ["purchase"], ["return"])[0]
    unit = transaction_unit(store)
    as_of = int(np.datetime64("2024-01-01", "s").astype(np.int64)) + 300 * DAY
    rows = np.flatnonzero(store.before(as_of).lengths() > 0)
    return (
        store.before(as_of).take(rows),
        future_truth(store.after(as_of, as_of + 30 * DAY).take(rows), unit),
        as_of,
        unit,
    )


@pytest.fixture(scope="session")
def cj_sample(tmp_path_factory):
    """(store, as_of): 300 Complete Journey households drawn with seed 0, read as a user's log is;
    cutoff 2017-05-15T04:00 (19 weeks of history before it, as many after it)."""
    if not CJ.exists():
        pytest.skip(f"{CJ} is not here (../shared beside the repository)")
    events = pq.read_table(CJ)
    ids = np.unique(events["customer_id"].to_numpy(zero_copy_only=False))
    chosen = np.random.default_rng(0).choice(ids, 300, replace=False)
    path = tmp_path_factory.mktemp("cj") / "sample.parquet"
    pq.write_table(events.filter(pc.is_in(events["customer_id"], value_set=pa.array(chosen.tolist()))), path)
    store, _ = load_store(EventLogSpec(str(path), Columns(), ["purchase"], ["return"], "fail", True))
    return store, int(np.datetime64("2017-05-15T04:00", "s").astype(np.int64))
