"""Saving and loading a trained encoder."""

from __future__ import annotations

import pytest
import torch

from engine.model.encoder import GRUEncoder
from engine.model.io import load_model, save_model
from engine.model.module import CustomerEncoder


def test_bundles_with_weights_of_switched_off_objectives_still_load(tmp_path):
    config = {"_target_": "engine.model.module.CustomerEncoder", "dim": 8, "out_dim": 4, "item_weight": 0.0,
              "encoder": {"_target_": "engine.model.encoder.GRUEncoder", "_partial_": True}}
    model = CustomerEncoder([4, 10, 5, 3], encoder=GRUEncoder, dim=8, out_dim=4, item_weight=0.0)
    path = save_model(model, config, {}, tmp_path / "model.pt")
    payload = torch.load(path, weights_only=False)
    payload["state_dict"]["head.0.weight"] = torch.zeros(8, 18)  # as older bundles carried
    payload["state_dict"]["item_vectors"] = torch.zeros(10, 4)
    torch.save(payload, path)
    loaded, _ = load_model(path)
    assert not hasattr(loaded, "head") and torch.equal(loaded.project.weight, model.project.weight)

    payload["state_dict"]["encoder.rnn.weight_xx"] = torch.zeros(1)
    torch.save(payload, path)
    with pytest.raises(RuntimeError, match="do not match its config"):
        load_model(path)
