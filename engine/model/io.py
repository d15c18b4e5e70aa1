"""Save and load a trained encoder as a plain data file: its model config, vocabularies, hparams and weights.

``model.pt`` is a ``torch.save`` of a dict holding only str, int, float, bool, None, lists, dicts and
tensors, so it loads with ``torch.load(..., weights_only=True)``: reading a bundle never runs code from it.
The module is rebuilt from an allow-list of our classes (``MODELS``, ``ENCODERS``), never by importing the
``_target_`` the file names.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import torch
from omegaconf import OmegaConf

from engine.model.encoder import GRUEncoder, TransformerEncoder
from engine.model.module import CustomerEncoder

MODEL_FILE = "model.pt"
MODELS = {"engine.model.module.CustomerEncoder": CustomerEncoder}
ENCODERS = {"engine.model.encoder.GRUEncoder": GRUEncoder,
            "engine.model.encoder.TransformerEncoder": TransformerEncoder}
HYDRA_KEYS = {"_target_", "_partial_", "_convert_", "_recursive_"}
PLAIN = (str, int, float, bool, type(None))


class ModelFileError(ValueError):
    """A model file that is not one save_model writes; the message names the file and what was wrong."""


def save_model(model: CustomerEncoder, model_config, vocabs: dict[str, list[str]], path: str | os.PathLike,
               extra: dict | None = None) -> Path:
    """Write weights + the config that rebuilds the module (``model_config`` has ``_target_``)."""
    config = OmegaConf.to_container(model_config, resolve=True) if not isinstance(model_config, dict) else model_config
    hparams = {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
               for k, v in model.hparams.items()}
    payload = {"model_config": config, "vocabs": vocabs, "hparams": hparams, "extra": extra or {}}
    path = Path(path)
    _check_plain(payload, path, "")
    payload["state_dict"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_model(path: str | os.PathLike, map_location: str = "cpu") -> tuple[CustomerEncoder, dict]:
    """(module in eval mode, payload) from a file written by save_model; ModelFileError if it is not one.

    payload: {"model_config", "vocabs", "hparams", "extra", "state_dict"}."""
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # the weights-only unpickler refuses anything but plain data and tensors
        raise ModelFileError(f"{path}: not a plain model file (it must load with torch.load(weights_only=True); "
                             f"rebuild it with train.py): {err}") from err
    keys = ("model_config", "hparams", "state_dict")
    if not isinstance(payload, dict) or not all(isinstance(payload.get(k), dict) for k in keys):
        raise ModelFileError(f"{path}: not a model file of save_model (expected a dict with the dicts {keys})")
    payload.setdefault("vocabs", {})
    payload.setdefault("extra", {})
    model = build_model(payload["model_config"], payload["hparams"], path)
    # Bundles written before switched-off objectives stopped building parameters carry their unused weights.
    missing, unexpected = model.load_state_dict(payload["state_dict"], strict=False)
    unused = [k for k in unexpected if k == "item_vectors" or k.startswith("head.")]
    if missing or len(unused) != len(unexpected):
        raise RuntimeError(f"{path}: the model's weights do not match its config (missing {missing}, "
                           f"unexpected {sorted(set(unexpected) - set(unused))})")
    model.eval()
    return model, payload


def build_model(config: dict, hparams: dict, path: str | os.PathLike = MODEL_FILE) -> CustomerEncoder:
    """The module a saved model config names, built from MODELS and ENCODERS only.

    config: {"_target_": one of MODELS, "encoder": {"_target_": one of ENCODERS, "_partial_": true, ...},
    constructor arguments...}; hparams: the module's recorded constructor arguments (override config)."""
    model_class = _allowed(config, MODELS, path, "model_config")
    encoder_config = config.get("encoder")
    encoder_class = _allowed(encoder_config, ENCODERS, path, "model_config.encoder")
    encoder_kwargs = _kwargs(encoder_class, encoder_config, path, "model_config.encoder", exclude={"dim"})
    kwargs = _kwargs(model_class, {k: v for k, v in config.items() if k != "encoder"}, path, "model_config",
                     exclude={"encoder"})
    known = _parameters(model_class) - {"encoder"}
    kwargs.update({k: v for k, v in (hparams or {}).items() if k in known})

    def encoder(dim: int):
        return encoder_class(dim=dim, **encoder_kwargs)

    try:
        return model_class(encoder=encoder, **kwargs)
    except (TypeError, ValueError, IndexError) as err:
        raise ModelFileError(f"{path}: cannot build {config['_target_']} from its saved config: {err}") from err


def _allowed(config, classes: dict, path, where: str):
    """The class of classes that config["_target_"] names, else ModelFileError naming it."""
    target = config.get("_target_") if isinstance(config, dict) else None
    if target not in classes:
        raise ModelFileError(f"{path}: {where}._target_ {target!r} is not one of the engine's classes "
                             f"(expected one of {sorted(classes)})")
    return classes[target]


def _parameters(cls) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters) - {"self"}


def _kwargs(cls, config: dict, path, where: str, exclude: set[str]) -> dict:
    """config's constructor arguments of cls; ModelFileError naming a key that is not one."""
    kwargs = {k: v for k, v in config.items() if k not in HYDRA_KEYS}
    unknown = sorted(set(kwargs) - (_parameters(cls) - exclude))
    if unknown:
        raise ModelFileError(f"{path}: {where} has keys {unknown} that {cls.__name__} does not take "
                             f"(expected some of {sorted(_parameters(cls) - exclude)})")
    return kwargs


def _check_plain(value, path: Path, where: str) -> None:
    """ValueError unless value is made of dicts with str keys, lists and plain scalars (what JSON holds)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{path}: {where or 'payload'} key {key!r} is not a string")
            _check_plain(item, path, f"{where}.{key}" if where else key)
    elif isinstance(value, (list, tuple)):
        if all(isinstance(item, PLAIN) for item in value):  # a vocabulary: no per-token walk
            return
        for i, item in enumerate(value):
            _check_plain(item, path, f"{where}[{i}]")
    elif not isinstance(value, PLAIN):
        raise ValueError(f"{path}: {where} is of type {type(value).__name__}, not plain data (str, number, bool, "
                         f"None, list, dict): it would not load with weights_only=True")
