"""Fitting the forecasting head of a trained encoder: the second stage of training.

The encoder is trained first (CoLES and items). Its weights are then frozen, and (history before T,
transactions and spend in [T, T + h)) pairs are drawn for every customer, several per customer, each
history encoded once. The head (and its priors, see engine.model.module.CustomerEncoder.forecast) is fitted
on these pairs with Lightning for up to ``epochs`` passes, with early stopping on the validation
customers' pairs. A pass over precomputed states costs a small MLP, so the head sees many more cutoffs
and windows than it could inside the encoder's training steps, where each pair would cost an encoder pass
of its own (a history shared by several cutoffs would bias the fit: see TrainCollate.forecast_pairs).
"""

from __future__ import annotations

import logging

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from engine.data.store import SequenceStore
from engine.model.datamodule import TrainCollate
from engine.model.losses import forecast_loss
from engine.model.small_fit import SmallFit

log = logging.getLogger(__name__)

FIELDS = ("state", "context", "count", "spend", "horizon", "weight")


@torch.inference_mode()
def encode_pairs(model, store: SequenceStore, rows: np.ndarray, collate: TrainCollate, seed: int,
                 chunk: int = 256) -> dict[str, torch.Tensor]:
    """{"state" float32 [N, dim], "context", "count", "spend", "horizon", "weight" [N]}: collate's forecast
    pairs for the customers ``rows`` (``collate.forecast_samples`` each), encoded by the frozen encoder, on
    the CPU; "state" is [N, 0] (no encoder pass) when the head does not read it (head_state=false).
    Customers go ``chunk`` at a time, so memory stays that of one chunk's histories."""
    rng = np.random.default_rng(seed)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in FIELDS}
    for start in range(0, len(rows), chunk):
        pairs = collate.forecast_pairs(store.take(rows[start:start + chunk]), rng)
        if model.hparams.get("head_state"):
            batch = {k: pairs[k].to(device) for k in ("cat", "num", "lengths")}
            state = model.state(batch, pairs["pair_row"].to(device), pairs["pair_step"].to(device)).float().cpu()
        else:
            state = torch.zeros(len(pairs["count"]), 0)
        parts["state"].append(state)
        for k in FIELDS[1:]:
            parts[k].append(pairs[k])
    model.train(was_training)
    return {k: torch.cat(v) for k, v in parts.items()}


class HeadFit(SmallFit):
    """Trains ``model``'s forecasting head (head, log_prior) on encoded pairs; the rest of the model stays
    as it is."""

    name = "forecast"

    def __init__(self, model, lr: float = 2e-3, weight_decay: float = 1e-4):
        super().__init__(lr, weight_decay)
        self.model = model

    def fitted(self) -> list[torch.nn.Parameter]:
        return [*self.model.head.parameters(), self.model.log_prior]

    def loss(self, batch, stage: str) -> torch.Tensor:
        """Training: the members' losses, each fitted on its own; validation: the loss of their mean."""
        state, context, count, spend, horizon, weight = batch
        if stage == "train":
            return torch.stack([forecast_loss(self.model.forecast(state, context, k), count, spend, horizon, weight)
                                for k in range(len(self.model.head))]).mean()
        return forecast_loss(self.model.forecast(state, context), count, spend, horizon, weight)


def fit_head(model, store: SequenceStore, train_rows: np.ndarray, val_rows: np.ndarray, collate: TrainCollate,
             trainer_kwargs: dict, epochs: int = 30, batch_size: int = 512, seed: int = 0) -> dict:
    """Fit the head on pairs of the train customers, stopping early on the validation customers' pairs;
    keeps the head of the best validation epoch; returns {"pairs": train pairs, "epochs": epochs run,
    "val_forecast": the best validation loss}."""
    from pytorch_lightning.callbacks import EarlyStopping

    train = encode_pairs(model, store, train_rows, collate, seed)
    val = encode_pairs(model, store, val_rows, collate, seed + 1) if len(val_rows) else None
    for p in model.parameters():
        p.requires_grad_(False)
    fit = HeadFit(model)
    for p in fit.fitted():
        p.requires_grad_(True)
    generator = torch.Generator().manual_seed(seed)
    loaders = {"train_dataloaders": DataLoader(TensorDataset(*(train[k] for k in FIELDS)), batch_size=batch_size,
                                               shuffle=True, generator=generator)}
    callbacks = []
    if val is not None:
        loaders["val_dataloaders"] = DataLoader(TensorDataset(*(val[k] for k in FIELDS)), batch_size=4096)
        callbacks.append(EarlyStopping(monitor="val_forecast", mode="min", patience=4))
    run = pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, callbacks=callbacks,
                     enable_model_summary=False, num_sanity_val_steps=0, **trainer_kwargs)
    run.fit(fit, **loaders)
    fit.restore_best()
    model.span_days.fill_((collate.end - store.time_range()[0]) / 86400)
    for p in model.parameters():
        p.requires_grad_(True)
    result = {"pairs": int(len(train["count"])), "epochs": int(run.current_epoch),
              "val_forecast": fit.best_loss}
    log.info("forecast head fitted on %d pairs of %d customers: %d epochs, validation loss %.4f",
             result["pairs"], len(train_rows), result["epochs"], result["val_forecast"])
    return result
