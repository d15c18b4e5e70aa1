"""Runs that would go silently wrong say so: look-alike columns left unmapped, no purchase events, a nightly
embed that forgot the mapping, an evaluation over a served bundle, a forecast that needed a large correction."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from engine import pipeline
from engine.data import SequenceStore
from engine.data.checks import StrictDataError, check_columns
from engine.data.events import Columns
from tests.conftest import run


def renamed(log, out, rename: dict[str, str], purchase: str | None = None):
    """The log with some columns renamed (and the purchase events' type renamed to ``purchase``)."""
    table = pq.read_table(log)
    if purchase is not None:
        types = table["event_type"].combine_chunks()
        table = table.set_column(table.schema.get_field_index("event_type"), "event_type",
                                 pc.replace_substring(types, "purchase", purchase))
    table = table.rename_columns([rename.get(c, c) for c in table.column_names])
    table = table.append_column("age", pa.array(np.full(table.num_rows, 40)))
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    return out


def test_look_alike_columns_left_unmapped_are_named(tiny_log, tmp_path, caplog):
    events = renamed(tiny_log, tmp_path / "shop.parquet", {"item_id": "sku", "amount": "price"})
    with caplog.at_level("INFO"):
        check_columns([str(events)], Columns())
    assert "data.columns.item_id=sku" in caplog.text and "data.columns.amount=price" in caplog.text
    assert "'age'" in caplog.text  # read by nothing: said, not silently ignored
    with pytest.raises(StrictDataError, match="data.columns.item_id=sku"):
        check_columns([str(events)], Columns(), strict=True)
    caplog.clear()
    with caplog.at_level("WARNING"):
        check_columns([str(events)], Columns(item_id="sku", amount="price"))
    assert "looks like" not in caplog.text


def test_a_log_with_no_purchase_events_warns_and_strict_stops(tiny_log, tmp_path, caplog):
    events = renamed(tiny_log, tmp_path / "orders.parquet", {}, purchase="order")
    cfg = pipeline_config([f"data.path={events}", f"out_dir={tmp_path / 'b'}"])
    with caplog.at_level("WARNING"):
        data = pipeline.load_data(cfg)
    assert data.store.n_events and "no purchase events" in caplog.text and "data.purchase_types" in caplog.text
    assert "'order'" in caplog.text
    with pytest.raises(StrictDataError, match="no purchase events"):
        pipeline.load_data(pipeline_config([f"data.path={events}", "data.strict=true"]))


def pipeline_config(overrides):
    from engine.config import validate
    from tests.conftest import FAST, compose_config

    cfg = compose_config(FAST + overrides)
    validate(cfg)
    return cfg


def test_the_nightly_embed_reads_the_log_the_way_the_bundle_was_trained(tiny_log, tmp_path, caplog):
    events = renamed(tiny_log, tmp_path / "shop" / "events.parquet", {"customer_id": "user_id"}, purchase="order")
    mapping = ["data.columns.customer_id=user_id", "data.purchase_types=[order]"]
    bundle = run(pipeline.run_all, [f"data.path={events}", f"out_dir={tmp_path / 'bundle'}", *mapping])
    with caplog.at_level("INFO"):
        out = run(pipeline.run_embed, ["stage=embed", f"bundle={bundle}", f"data.path={events}",
                                       f"out_dir={tmp_path / 'nightly'}"])  # the mapping not given again
    assert "data.columns=" in caplog.text and "data.purchase_types=['order'] from the bundle" in caplog.text
    assert "no purchase events" not in caplog.text
    store = SequenceStore.open(out / "store")
    assert store.purchase_types == ["order"] and store.is_purchase().any()
    profiles = pq.read_table(out / "profiles.parquet")
    spend = [c for c in profiles.column_names if "spend" in c][0]
    assert pc.max(profiles[spend]).as_py() > 0
    config = json.loads((out / "manifest.json").read_text())["config"]["data"]
    assert config["columns"]["customer_id"] == "user_id" and config["purchase_types"] == ["order"]


def test_evaluate_never_writes_over_a_bundle_of_another_stage(bundle, tiny_log, tmp_path, caplog):
    served = tmp_path / "bundle"
    shutil.copytree(bundle, served)
    before = (served / "manifest.json").read_text()
    with caplog.at_level("WARNING"):
        out = run(pipeline.run_evaluate, ["stage=evaluate", f"data.path={tiny_log}", f"out_dir={served}",
                                          "data.cutoff=2024-11-01", "evaluate.sections=[segments]"])
    assert out == tmp_path / "bundle-evaluate" and (out / "evaluation.json").exists()
    assert (served / "manifest.json").read_text() == before and not (served / "evaluation.json").exists()
    assert "goes to" in caplog.text
    assert json.loads((out / "manifest.json").read_text())["stage"] == "evaluate"
    again = run(pipeline.run_evaluate, ["stage=evaluate", f"data.path={tiny_log}", f"out_dir={out}",
                                        "data.cutoff=2024-11-01", "evaluate.sections=[segments]"])
    assert again == out  # an evaluation bundle is replaced by the next evaluation


def test_forecast_calibration_is_recorded_and_large_factors_flagged(bundle):
    from engine.pipeline import calibration_flagged

    forecast = json.loads((bundle / "manifest.json").read_text())["forecast"]
    assert len(forecast["calibration"]) == 2 and isinstance(forecast["calibration_flagged"], bool)
    assert forecast["calibration_flagged"] == calibration_flagged(forecast["calibration"])
    assert calibration_flagged([0.2, 1.0]) and calibration_flagged([1.0, 2.5]) and not calibration_flagged([0.6, 1.9])
