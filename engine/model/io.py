"""Save and load a trained encoder as a plain file: its Hydra model config, vocabularies and weights."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from engine.model.module import CustomerEncoder

MODEL_FILE = "model.pt"


def save_model(model: CustomerEncoder, model_config, vocabs: dict[str, list[str]], path: str | os.PathLike,
               extra: dict | None = None) -> Path:
    """Write weights + the config that rebuilds the module (``model_config`` has ``_target_``)."""
    config = OmegaConf.to_container(model_config, resolve=True) if not isinstance(model_config, dict) else model_config
    payload = {"model_config": config, "vocabs": vocabs, "hparams": dict(model.hparams),
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "extra": extra or {}}
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_model(path: str | os.PathLike, map_location: str = "cpu") -> tuple[CustomerEncoder, dict]:
    """(module in eval mode, payload) from a file written by save_model."""
    payload = torch.load(path, map_location=map_location, weights_only=False)
    hp = payload["hparams"]
    model = instantiate(payload["model_config"], vocab_sizes=hp["vocab_sizes"], spend_scale=hp["spend_scale"],
                        forecast_weight=hp["forecast_weight"], unit=hp.get("unit", "basket"), _convert_="all")
    # Bundles written before switched-off objectives stopped building parameters carry their unused weights.
    missing, unexpected = model.load_state_dict(payload["state_dict"], strict=False)
    unused = [k for k in unexpected if k == "item_vectors" or k.startswith("head.")]
    if missing or len(unused) != len(unexpected):
        raise RuntimeError(f"{path}: the model's weights do not match its config (missing {missing}, "
                           f"unexpected {sorted(set(unexpected) - set(unused))})")
    model.eval()
    return model, payload
