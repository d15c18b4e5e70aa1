"""Several sources in one run (data.sources): a point-of-sale Parquet log keyed by loyalty id and a web CSV log
keyed by hashed email, each with its own columns, event names, channel and clock, merged through an id-mapping
table into one timeline per customer; unmapped and conflicting keys counted, never merged; each refusal's
message."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine import pipeline
from engine.config import ConfigError, validate
from engine.data import Columns, EventLogError, EventLogSpec, load_store
from engine.data.checks import DataQualityError
from engine.data.events import Source
from engine.data.sources import IdMap
from tests.conftest import compose_config

T0 = 1_719_792_000  # 2024-07-01T00:00:00Z; New York is UTC-4 then


def shop(directory: Path) -> dict:
    """pos.parquet (loyalty ids as integers, local New York times without a zone, 'sale' and 'refund'),
    web.csv (hashed emails, epoch milliseconds, its own column names, 'order' and 'view', an app/web column
    with blanks) and ids.csv (hash -> loyalty id; h3 maps to two customers, h9 is in no row)."""
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({
        "household": pa.array([101, 101, 102, 103], pa.int64()),
        "when": ["2024-07-01T09:00:00", "2024-07-03T18:30:00", "2024-07-02T12:00:00", "2024-07-05T08:00:00"],
        "action": ["sale", "refund", "sale", "sale"],
        "sku": ["milk", "milk", "bread", "eggs"],
        "value": [3.5, -3.5, 2.0, 4.0],
    }), directory / "pos.parquet")
    ms = lambda seconds: (T0 + seconds) * 1000  # noqa: E731
    (directory / "web.csv").write_text(
        "email_hash,t,ev,product,device\n"
        f"h1,{ms(3600)},view,milk,app\n"         # 101
        f"h1,{ms(7200)},order,milk,\n"           # 101, no device: web
        f"h2,{ms(86400 * 3)},view,bread,web\n"    # 102
        f"h3,{ms(86400)},view,eggs,app\n"        # conflicting: 103 and 104
        f"h9,{ms(86400)},order,eggs,web\n"       # unmapped
        f"h9,{ms(86400 * 2)},view,eggs,web\n")   # unmapped
    (directory / "ids.csv").write_text("email_hash,loyalty\nh1,101\nh2,102\nh3,103\nh3,104\nh1,101\n")
    return {"pos": directory / "pos.parquet", "web": directory / "web.csv", "ids": directory / "ids.csv"}


def spec_of(files: dict, unmapped: str = "drop", **extra) -> EventLogSpec:
    pos = Source(str(files["pos"]), "pos", Columns(customer_id="household", ts="when", event_type="action",
                                                   item_id="sku", amount="value"),
                 event_types={"sale": "purchase", "refund": "return"}, channel="store", timezone="America/New_York")
    web = Source(str(files["web"]), "web", Columns(customer_id="email_hash", ts="t", event_type="ev",
                                                   item_id="product", channel="device"),
                 event_types={"order": "purchase"}, channel="web", map_ids=True)
    return EventLogSpec(None, sources=[pos, web], id_map=IdMap(str(files["ids"]), "email_hash", "loyalty",
                                                               unmapped=unmapped), on_bad_rows="fail", **extra)


def timeline(store, customer: str) -> list[tuple]:
    """(ts, event type, item, channel) of one customer's events, in time order."""
    row = int(store.customer_index([customer])[0])
    lo, hi = store.offsets[row], store.offsets[row + 1]
    v = store.vocabs
    return [(int(store.columns["ts"][i]), v["event_type"][store.columns["event_type"][i]],
             v["item_id"][store.columns["item_id"][i]], v["channel"][store.columns["channel"][i]])
            for i in range(lo, hi)]


def test_two_sources_merge_into_one_timeline_per_customer(tmp_path):
    store, report = load_store(spec_of(shop(tmp_path)))
    assert sorted(store.customer_ids.to_pylist()) == ["101", "102", "103"]  # 104 only through the conflicting key
    local_9am = T0 + 9 * 3600 + 4 * 3600  # 09:00 in New York is 13:00 UTC in July
    assert timeline(store, "101") == [
        (T0 + 3600, "view", "milk", "app"),
        (T0 + 7200, "purchase", "milk", "web"),            # 'order', no device: the source's channel
        (local_9am, "purchase", "milk", "store"),         # 'sale', at the pos source's local time
        (T0 + 2 * 86400 + 18 * 3600 + 30 * 60 + 4 * 3600, "return", "milk", "store"),
    ]
    assert [e[1:] for e in timeline(store, "102")] == [("purchase", "bread", "store"), ("view", "bread", "web")]
    assert report.dropped_unmapped_customer == 2 and report.dropped_conflicting_customer == 1
    q = report.quality.to_dict()
    web = next(f for f in q["files"] if f["source"] == "web")
    assert web["dropped"]["unmapped_customer"] == 2 and web["dropped"]["conflicting_customer"] == 1
    assert web["rows_read"] == 6 and web["rows_kept"] == 3
    sources = {s["source"]: s for s in q["sources"]}
    assert sources["pos"]["events_per_customer"]["customers"] == 3
    assert sources["web"]["events_per_customer"]["customers"] == 2
    assert sources["pos"]["shared_customers"] == {"web": 2} and sources["web"]["shared_customers"] == {"pos": 2}
    assert q["total"]["unknown_event_type"] == 0  # every source's names mapped to canonical ones


def test_unmapped_keys_kept_as_customers_of_their_own(tmp_path):
    store, report = load_store(spec_of(shop(tmp_path), unmapped="keep"))
    assert "web:h9" in store.customer_ids.to_pylist() and "h9" not in store.customer_ids.to_pylist()
    assert [e[1] for e in timeline(store, "web:h9")] == ["purchase", "view"]
    assert report.dropped_unmapped_customer == 0 and report.dropped_conflicting_customer == 1  # never merged


def with_source_column(tmp_path: Path, rows: str):
    """load_store of the shop with an id map whose 'system' column names each row's source."""
    files = shop(tmp_path)
    (tmp_path / "ids.csv").write_text("email_hash,loyalty,system\n" + rows)
    spec = spec_of(files)
    spec.id_map.source = "system"
    return load_store(spec)


def test_id_map_rows_for_one_source_only(tmp_path):
    store, report = with_source_column(tmp_path, "h1,101,web\nh2,102,crm\n")
    assert report.dropped_unmapped_customer == 4  # h2 belongs to another system, h3 and h9 to none
    assert [e[3] for e in timeline(store, "101")][:2] == ["app", "web"]


def test_a_source_mostly_unmapped_stops_the_run_with_its_file_and_column(tmp_path):
    files = shop(tmp_path)
    (tmp_path / "ids.csv").write_text("email_hash,loyalty\nh1,101\n")  # a map of another key: 4 of 6 unmapped
    cfg = compose_config(sources_overrides(files, tmp_path))
    with pytest.raises(DataQualityError, match=r"web.csv: column 'email_hash': 66.7% of rows \(4 of 6\) have a key "
                                               r"the id map lacks \(4\).*over data.max_unmapped_share=0.5"):
        pipeline.load_data(cfg)
    data = pipeline.load_data(compose_config(sources_overrides(files, tmp_path) + ["data.max_unmapped_share=0.7"]))
    assert data.store.n_customers == 3 and data.quality["thresholds"]["max_unmapped_share"] == 0.7


def sources_overrides(files: dict, tmp_path: Path) -> list[str]:
    return [
        f"data.sources=[{{name: pos, path: '{files['pos']}', timezone: America/New_York, channel: store, "
        "columns: {customer_id: household, ts: when, event_type: action, item_id: sku, amount: value}, "
        "event_types: {sale: purchase, refund: return}}, "
        f"{{name: web, path: '{files['web']}', map_ids: true, channel: web, event_types: {{order: purchase}}, "
        "columns: {customer_id: email_hash, ts: t, event_type: ev, item_id: product, channel: device}}]",
        f"data.id_map.path={files['ids']}", "data.id_map.key=email_hash", "data.id_map.customer_id=loyalty",
        "data.min_count=1", f"out_dir={tmp_path / 'bundle'}",
    ]


def test_sources_from_the_command_line_train_a_bundle(tmp_path):
    files = shop(tmp_path)
    cfg = compose_config(sources_overrides(files, tmp_path))
    validate(cfg)
    data = pipeline.load_data(cfg)
    assert sorted(data.store.customer_ids.to_pylist()) == ["101", "102", "103"]
    assert data.info["files"] == [str(files["pos"]), str(files["web"])]
    assert [s["source"] for s in data.quality["sources"]] == ["pos", "web"]
    fingerprint = data.info["fingerprint"]
    (tmp_path / "ids.csv").write_text("email_hash,loyalty\nh1,101\nh2,102\nh3,103\nh9,105\n")
    assert pipeline.load_data(cfg).info["fingerprint"] != fingerprint  # the id map is an input of the run


def test_one_source_as_today_reads_event_names_clock_and_channel(tmp_path):
    files = shop(tmp_path)
    cfg = compose_config([f"data.path={files['pos']}", "data.columns.customer_id=household", "data.columns.ts=when",
                          "data.columns.event_type=action", "data.columns.item_id=sku", "data.columns.amount=value",
                          "+data.event_types={sale: purchase, refund: return}", "data.channel=store",
                          "data.timezone=America/New_York", "data.min_count=1"])
    data = pipeline.load_data(cfg)
    assert timeline(data.store, "101")[0] == (T0 + 13 * 3600, "purchase", "milk", "store")
    assert data.quality["sources"] == []


@pytest.mark.parametrize("change, message", [
    (lambda s: setattr(s.sources[0], "timezone", "Mars/Olympus"),
     r"data.sources\[0\].timezone='Mars/Olympus': not a time zone"),
    (lambda s: setattr(s.sources[1], "name", "pos"), r"data.sources\[1\].name='pos': two sources have this name"),
    (lambda s: setattr(s, "id_map", None), r"data.sources\[1\].map_ids=true but data.id_map.path is not set"),
    (lambda s: setattr(s.sources[1], "path", s.sources[0].path), r"pos.parquet: read by more than one of"),
    (lambda s: setattr(s.id_map, "customer_id", "member"), r"ids.csv: the id map lacks column\(s\) \['member'\]"),
    (lambda s: setattr(s, "path", "other.parquet"), r"data.path=other.parquet and data.sources are both set"),
])
def test_each_refusal_names_its_key(tmp_path, change, message):
    spec = spec_of(shop(tmp_path))
    change(spec)
    with pytest.raises(EventLogError, match=message):
        load_store(spec)


def test_blank_ids_in_the_id_map_name_the_rows(tmp_path):
    files = shop(tmp_path)
    (tmp_path / "ids.csv").write_text("email_hash,loyalty\nh1,101\nh2,\n")
    with pytest.raises(EventLogError, match=r"ids.csv: column 'loyalty': null or empty in rows 1"):
        load_store(spec_of(files))


@pytest.mark.parametrize("override, message", [
    ("data.sources=[{path: a.csv, format: tsv}]", r"data.sources\[0\].format='tsv'"),
    ("data.sources=[{path: a.csv, columns: {user: u}}]", r"data.sources\[0\].columns.user: no such field"),
    ("data.sources=[{path: a.csv, map_ids: true}]", r"data.sources\[0\].map_ids=true needs data.id_map.path"),
    ("data.id_map.unmapped=merge", r"data.id_map.unmapped='merge'"),
])
def test_config_refuses_a_source_before_any_work(override, message):
    with pytest.raises(ConfigError, match=message):
        validate(compose_config([override]))


def test_a_source_whose_format_is_not_its_extension(tmp_path):
    files = shop(tmp_path)
    text = tmp_path / "web.txt"
    text.write_text(Path(files["web"]).read_text())
    spec = spec_of(files)
    spec.sources[1].path, spec.sources[1].format = str(text), "csv"
    store, _ = load_store(spec)
    assert np.count_nonzero(store.lengths()) == 3


def test_a_nightly_embed_rereads_the_bundles_sources(tiny_log, tmp_path):
    """A bundle trained on two sources (the generated log split by rows, its second half keyed by "k" + id):
    stage=embed bundle=B with no data.path reads the same sources again, through the same id map."""
    import pyarrow.compute as pc

    from tests.conftest import run

    events = pq.read_table(tiny_log)
    half = events.num_rows // 2
    pq.write_table(events.slice(0, half), tmp_path / "pos.parquet")
    web = events.slice(half)
    ids = pc.cast(web["customer_id"], pa.string())
    keyed = web.set_column(web.schema.get_field_index("customer_id"), "customer_id",
                           pc.binary_join_element_wise(pa.scalar("k"), ids, ""))
    pq.write_table(keyed, tmp_path / "web.parquet")
    unique = pc.unique(ids)
    pq.write_table(pa.table({"source_key": pc.binary_join_element_wise(pa.scalar("k"), unique, ""),
                             "customer_id": unique}), tmp_path / "ids.parquet")
    sources = [f"data.sources=[{{name: pos, path: '{tmp_path / 'pos.parquet'}'}}, "
               f"{{name: web, path: '{tmp_path / 'web.parquet'}', map_ids: true}}]",
               f"data.id_map.path={tmp_path / 'ids.parquet'}"]
    bundle = run(pipeline.run_fit, [*sources, f"out_dir={tmp_path / 'bundle'}"])
    out = tmp_path / "nightly"
    embedded = run(pipeline.run_embed, [f"bundle={bundle}", f"out_dir={out}", "recommend.enabled=false"])
    manifest = json.loads((embedded / "manifest.json").read_text())
    assert [s["name"] for s in manifest["config"]["data"]["sources"]] == ["pos", "web"]
    assert manifest["data"]["files"] == [str(tmp_path / "pos.parquet"), str(tmp_path / "web.parquet")]
    embedded_ids = pq.read_table(embedded / "embeddings.parquet")["customer_id"].to_pylist()
    assert sorted(embedded_ids) == sorted(pc.unique(pc.cast(events["customer_id"], pa.string())).to_pylist())


def test_a_log_too_small_to_train_on_says_so(tmp_path):
    from tests.conftest import run

    with pytest.raises(ValueError, match=r"fit: the log has 3 customer\(s\), \d+ to train the encoder on and \d+ "
                                         r"to validate it .* use a larger log"):
        run(pipeline.run_fit, sources_overrides(shop(tmp_path), tmp_path) + ["forecast.weight=0"])


def test_kept_keys_are_counted_and_a_blank_key_is_no_customer(tmp_path):
    files = shop(tmp_path)
    text = Path(files["web"]).read_text() + f"   ,{(T0 + 50) * 1000},view,milk,web\n"
    Path(files["web"]).write_text(text)
    spec = spec_of(files, unmapped="keep")
    spec.on_bad_rows = "drop"
    store, report = load_store(spec)
    assert "web:   " not in store.customer_ids.to_pylist() and "web:" not in store.customer_ids.to_pylist()
    web = next(f for f in report.quality.to_dict()["files"] if f["source"] == "web")
    assert web["unmapped_kept"] == 2 and web["dropped"]["null_customer"] == 1


def test_a_blank_source_in_the_id_map_applies_to_every_source(tmp_path):
    _, report = with_source_column(tmp_path, "h1,101,\nh2,102, \n")
    assert report.dropped_unmapped_customer == 3  # h3 and h9 twice; h1 (twice) and h2 map
    assert report.dropped_conflicting_customer == 0 and report.quality.to_dict()["files"][1]["rows_kept"] == 3


def test_sources_take_the_top_level_defaults_and_a_csv_format_for_any_extension(tmp_path):
    files = shop(tmp_path)
    text = tmp_path / "web.txt"
    text.write_text(Path(files["web"]).read_text())
    overrides = sources_overrides({**files, "web": text}, tmp_path)
    overrides[0] = overrides[0].replace("timezone: America/New_York, ", "").replace("map_ids: true,",
                                                                                    "map_ids: true, format: csv,")
    cfg = compose_config(overrides + ["data.timezone=America/New_York"])
    data = pipeline.load_data(cfg)
    pos = timeline(data.store, "101")[2]
    assert pos == (T0 + 13 * 3600, "purchase", "milk", "store")  # New York time, from data.timezone
    assert data.info["dropped_unmapped_customer"] == 2
