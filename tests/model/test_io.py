"""Saving and loading a trained encoder: plain data only, rebuilt from the engine's own classes."""

from __future__ import annotations

import os

import pytest
import torch

from engine.data import EventLogSpec, load_store
from engine.model.datamodule import SequenceDataModule
from engine.model.encoder import GRUEncoder, TransformerEncoder
from engine.model.io import ModelFileError, load_model, save_model
from engine.model.module import CustomerEncoder

CONFIG = {"_target_": "engine.model.module.CustomerEncoder", "dim": 8, "out_dim": 4, "item_weight": 0.0,
          "encoder": {"_target_": "engine.model.encoder.GRUEncoder", "_partial_": True}}


def saved(tmp_path, config=CONFIG):
    model = CustomerEncoder([4, 10, 5, 3], encoder=GRUEncoder, dim=8, out_dim=4, item_weight=0.0)
    return model, save_model(model, config, {"item_id": ["UNKNOWN", "a"]}, tmp_path / "model.pt")


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_model_file_whose_pickle_runs_code_is_refused_without_running_it(tmp_path):
    _, path = saved(tmp_path)
    payload = torch.load(path, weights_only=True)
    marker = tmp_path / "MARKER"
    payload["extra"] = {"x": RunsCode(marker)}
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="not a plain model file"):
        load_model(path)
    assert not marker.exists()


@pytest.mark.parametrize("where", ["model", "encoder"])
def test_a_target_outside_the_engines_classes_is_refused_naming_it(tmp_path, where):
    _, path = saved(tmp_path)
    payload = torch.load(path, weights_only=True)
    config = payload["model_config"] if where == "model" else payload["model_config"]["encoder"]
    config["_target_"] = "os.system"
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match=r"model\.pt: model_config.*_target_ 'os.system' is not one of"):
        load_model(path)


def test_a_config_key_the_constructor_does_not_take_is_refused_naming_it(tmp_path):
    _, path = saved(tmp_path, {**CONFIG, "encoder": {**CONFIG["encoder"], "command": "rm -rf /"}})
    with pytest.raises(ModelFileError, match=r"model_config.encoder has keys \['command'\]"):
        load_model(path)


def test_save_refuses_what_would_not_load_as_plain_data(tmp_path):
    model, _ = saved(tmp_path)
    with pytest.raises(ValueError, match="extra.when is of type object"):
        save_model(model, CONFIG, {}, tmp_path / "other.pt", extra={"when": object()})
    assert not (tmp_path / "other.pt").exists()


@pytest.mark.parametrize("encoder", [GRUEncoder, TransformerEncoder])
def test_a_saved_model_predicts_exactly_as_before(tiny_log, tmp_path, encoder):
    store, _ = load_store(EventLogSpec(path=str(tiny_log)))
    dm = SequenceDataModule(store, batch_size=32, predict_batch_size=64, predict_max_len=32)
    sizes = [len(store.vocabs[f]) for f in ("event_type", "item_id", "category", "channel")]
    torch.manual_seed(0)
    model = CustomerEncoder(sizes, encoder=encoder, dim=16, out_dim=8, forecast_weight=1.0,
                            spend_scale=dm.spend_scale, unit=dm.unit, head_state=True).eval()
    model.calibration.copy_(torch.tensor([1.25, 0.75]))
    model.span_days.fill_(123.456789012345)  # float64: must come back to the last digit
    model.decay_per_day.fill_(1e-3 / 3)
    model.set_context_scale(torch.randn(50, model.context_mean.numel()) * 3 + 1)
    model.mean_value.fill_(17.5)
    target = f"engine.model.encoder.{encoder.__name__}"
    config = {"_target_": "engine.model.module.CustomerEncoder", "dim": 16, "out_dim": 8,
              "encoder": {"_target_": target, "_partial_": True}, "forecast_weight": 1.0, "head_state": True}
    path = save_model(model, config, store.vocabs, tmp_path / "model.pt", extra={"predict_max_len": 32})

    loaded, payload = load_model(path)
    assert not loaded.training and type(loaded.encoder) is encoder
    assert payload["vocabs"] == store.vocabs and payload["extra"] == {"predict_max_len": 32}
    assert payload["hparams"]["unit"] == dm.unit and payload["hparams"]["head_state"] is True
    state, back = model.state_dict(), loaded.state_dict()
    assert state.keys() == back.keys()
    assert all(back[k].dtype == v.dtype and torch.equal(back[k], v) for k, v in state.items())
    assert loaded.span_days.dtype == torch.float64 and loaded.span_days.item() == 123.456789012345
    batch = next(iter(dm.predict_dataloader()))
    with torch.no_grad():
        before, after = model.predict_step(batch, 0), loaded.predict_step(batch, 0)
    assert before.keys() == after.keys() >= {"embedding", "p_alive", "rate", "spend_rate"}
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_bundles_with_weights_of_switched_off_objectives_still_load(tmp_path):
    model, path = saved(tmp_path)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["head.0.weight"] = torch.zeros(8, 18)  # as older bundles carried
    payload["state_dict"]["item_vectors"] = torch.zeros(10, 4)
    torch.save(payload, path)
    loaded, _ = load_model(path)
    assert not hasattr(loaded, "head") and torch.equal(loaded.project.weight, model.project.weight)

    payload["state_dict"]["encoder.rnn.weight_xx"] = torch.zeros(1)
    torch.save(payload, path)
    with pytest.raises(RuntimeError, match="do not match its config"):
        load_model(path)
