"""Customer attributes through a whole run, on a sample of the real Complete Journey log and its demographics
(a third of the households have a row): the model's inputs leave report_only and dropped columns out, the
profiles and the report say who each segment is, stage=embed encodes alike, a new customer is scored with
unknown attributes, and an erased customer's attribute inputs are gone from the bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from engine import pipeline
from engine.bundle.bundle import Bundle
from engine.bundle.writer import apply_erasures
from engine.data.store import SequenceStore
from engine.embed.online import Scorer
from engine.model.io import load_model
from tests.conftest import run

CJ = Path(__file__).resolve().parents[3] / "shared" / "data" / "completejourney"
pytestmark = pytest.mark.skipif(not (CJ / "demographics.parquet").exists(), reason="no ../shared Complete Journey")


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """300 households' events, 150 of them with a demographics row."""
    demographics = pq.read_table(CJ / "demographics.parquet")
    known = pc.cast(demographics["household_id"], pa.string()).to_pylist()
    events = pq.read_table(CJ / "events.parquet", columns=["customer_id", "ts", "event_type", "item_id", "category",
                                                            "amount", "quantity", "channel"])
    ids = np.unique(events["customer_id"].to_numpy(zero_copy_only=False).astype(str))
    rng = np.random.default_rng(0)
    unknown = sorted(set(ids) - set(known))
    chosen = list(rng.choice(sorted(known), 150, replace=False)) + list(rng.choice(unknown, 150, replace=False))
    root = tmp_path_factory.mktemp("cj_attributes")
    pq.write_table(events.filter(pc.is_in(events["customer_id"], value_set=pa.array(chosen))), root / "events.parquet")
    return root / "events.parquet"


ATTRIBUTES = [f"data.attributes.path={CJ / 'demographics.parquet'}", "data.attributes.id_column=household_id",
              "data.attributes.report_only=[marital_status]", "data.attributes.drop=[kids_count]", "segment.k=5",
              "data.attributes.model=true"]


@pytest.fixture(scope="module")
def bundle(sample) -> Path:
    return run(pipeline.run_all, [f"data.path={sample}", f"out_dir={sample.parent / 'bundle'}", *ATTRIBUTES])


def test_the_model_reads_the_attributes_but_never_report_only_or_dropped_ones(bundle):
    encoder = json.loads((bundle / "attributes.json").read_text())
    assert sorted(encoder["categorical"]) == ["age", "home_ownership", "household_comp", "household_size", "income"]
    assert encoder["report_only"] == ["marital_status"] and "kids_count" not in json.dumps(encoder)
    width = sum(len(encoder["vocab"][c]) + 2 for c in encoder["categorical"])
    model, payload = load_model(bundle / "model.pt")
    assert payload["hparams"]["attributes"] == width and model.context_mean.shape[0] == 18 + width
    store = SequenceStore.open(bundle / "store")
    assert store.attributes.shape == (300, width)
    unknown = store.attributes[:, [i for i, n in enumerate(model_names(encoder)) if n.endswith("=unknown")]]
    assert (unknown.all(axis=1)).sum() == 150  # the households without a row: unknown in every column


def model_names(encoder: dict) -> list[str]:
    return [n for c in encoder["categorical"] for n in [f"{c}={v}" for v in encoder["vocab"][c]]
            + [f"{c}=other", f"{c}=unknown"]]


def test_profiles_and_report_say_who_each_segment_is(bundle):
    who = json.loads((bundle / "segment_attributes.json").read_text())
    assert len(who) == 5 and sum(w["size"] for w in who) == 300
    assert abs(sum(w["known_share"] * w["size"] for w in who) - 150) < 1  # shares of the 150 with a row
    assert all("marital_status" in w["columns"] and "kids_count" not in w["columns"] for w in who)
    profiles = pq.read_table(bundle / "profiles.parquet")
    cells = [json.loads(c) for c in profiles["attributes"].to_pylist()]
    assert set(cells[0]) == {"age", "income", "home_ownership", "marital_status", "household_size", "household_comp"}
    report = (bundle / "report.html").read_text()
    assert "Who each segment" in report and "income" in report


def test_embed_uses_the_bundles_encoder_and_a_new_customer_scores_with_unknown_attributes(bundle, sample):
    out = sample.parent / "embedded"
    run(pipeline.run_embed, [f"bundle={bundle}", f"data.path={sample}", f"out_dir={out}", *ATTRIBUTES])
    assert json.loads((out / "attributes.json").read_text()) == json.loads((bundle / "attributes.json").read_text())
    before = pq.read_table(bundle / "forecast.parquet").sort_by("customer_id")
    after = pq.read_table(out / "forecast.parquet").sort_by("customer_id")
    assert np.allclose(before["expected_spend"].to_numpy(), after["expected_spend"].to_numpy(), rtol=1e-4)
    scorer = Scorer(Bundle.load(bundle))
    answer = scorer.score([{"ts": "2017-06-01T10:00:00Z", "event_type": "purchase", "item_id": "1004906",
                            "amount": 3.5}], None)
    assert np.isfinite(answer["forecast"]["expected_spend"])


def test_an_erased_customer_loses_its_attribute_inputs(bundle, tmp_path):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    store = SequenceStore.open(copy / "store")
    gone = store.customer_ids[0].as_py()
    apply_erasures(copy, [gone])
    erased = SequenceStore.open(copy / "store")
    assert gone not in erased.customer_ids.to_pylist() and erased.attributes.shape[0] == store.n_customers - 1
    keep = np.flatnonzero(np.array(store.customer_ids.to_pylist()) != gone)
    assert np.array_equal(erased.attributes, store.attributes[keep])


def test_by_default_the_attributes_describe_segments_and_stay_out_of_the_model(sample):
    out = run(pipeline.run_all, [f"data.path={sample}", f"out_dir={sample.parent / 'default'}", "segment.k=3",
                                 f"data.attributes.path={CJ / 'demographics.parquet'}",
                                 "data.attributes.id_column=household_id", "recommend.enabled=false"])
    assert not (out / "attributes.json").exists() and SequenceStore.open(out / "store").attributes is None
    model, payload = load_model(out / "model.pt")
    assert payload["hparams"]["attributes"] == 0
    assert "attribute_unknown" not in model.state_dict()  # the weights of a model without: as bundles before
    who = json.loads((out / "segment_attributes.json").read_text())
    assert len(who) == 3 and {"age", "income", "kids_count"} <= set(who[0]["columns"])


def test_a_wrong_attributes_column_fails_before_the_log_is_read(sample):
    from engine.data.attributes import AttributesError
    from tests.conftest import compose_config

    cfg = compose_config([f"data.path={sample}", f"data.attributes.path={CJ / 'demographics.parquet'}",
                          "data.attributes.id_column=household"])
    with pytest.raises(AttributesError, match=r"no id column 'household'"):
        pipeline.load_data(cfg)

