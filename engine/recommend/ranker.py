"""The ranker: a small network that scores (customer, candidate item) pairs from their FEATURES.

It is fitted on the log itself, before any question is asked: the history before ``as_of - h`` gives the
candidates and their features, the items each customer bought in the ``h`` days after are the answer.
The loss is listwise (a softmax over each customer's candidates, the items bought being the targets), so
the scores order a customer's list the way Recall and NDCG judge it. Fitted with Lightning, stopping early
on held-out customers; saved as plain tensors (weights only).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from engine.model.small_fit import SmallFit
from engine.recommend.candidates import FEATURES, Candidates

log = logging.getLogger(__name__)

WIDTH = 32
FILE = "ranker.pt"


class Ranker(nn.Module):
    def __init__(self, n_features: int = len(FEATURES), width: int = WIDTH):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_features, width), nn.GELU(), nn.Linear(width, width), nn.GELU(),
                                 nn.Linear(width, 1))
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net((features - self.mean) / self.scale).squeeze(-1)

    @torch.inference_mode()
    def score(self, features: np.ndarray, chunk: int = 1 << 18) -> np.ndarray:
        """float32 [m]: the score of each pair (higher: more likely bought)."""
        self.eval()
        out = [self(torch.from_numpy(features[i:i + chunk])).numpy() for i in range(0, len(features), chunk)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def save(self, path: str | Path) -> None:
        torch.save({"features": list(FEATURES), "width": WIDTH, "state": self.state_dict()}, path)

    @classmethod
    def load(cls, path: str | Path) -> Ranker:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if list(saved["features"]) != list(FEATURES):
            raise ValueError(f"{path}: a ranker of features {saved['features']}, this engine computes {FEATURES}: "
                             "retrain the bundle (stage=all)")
        ranker = cls(len(FEATURES), int(saved["width"]))
        ranker.load_state_dict(saved["state"])
        return ranker.eval()


def lists(c: Candidates, bought: np.ndarray, max_len: int | None = None) -> dict[str, torch.Tensor]:
    """Padded per-customer lists of the customers with at least one candidate bought: features [L, K, F],
    target [L, K] (1 bought), mask [L, K]."""
    rows, start, length = np.unique(c.row, return_index=True, return_counts=True)
    hits = np.add.reduceat(bought.astype(np.int64), start) if len(start) else np.zeros(0, np.int64)
    keep = hits > 0
    start, length = start[keep], length[keep]
    k = int(length.max()) if len(length) else 1
    k = min(k, max_len) if max_len else k
    at = start[:, None] + np.arange(k)[None, :]
    mask = np.arange(k)[None, :] < length[:, None]
    at = np.where(mask, at, 0)
    return {"features": torch.from_numpy(c.features[at]), "target": torch.from_numpy(bought[at] & mask).float(),
            "mask": torch.from_numpy(mask)}


class LengthBuckets(torch.utils.data.Sampler):
    """Batches of lists of similar length (shuffled within and across), so a batch pads to its own longest."""

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int):
        self.lengths, self.batch_size, self.rng = lengths, batch_size, np.random.default_rng(seed)

    def __iter__(self):
        noisy = self.lengths + self.rng.uniform(0, 1, len(self.lengths))  # ties broken anew every epoch
        order = np.argsort(noisy)
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        for j in self.rng.permutation(len(batches)):
            yield batches[j].tolist()

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)


def trimmed(batch):
    """Stack a batch of (features, target, mask) lists and cut the padding none of them uses."""
    features, target, mask = (torch.stack(x) for x in zip(*batch, strict=True))
    k = int(mask.sum(1).max())
    return features[:, :k], target[:, :k], mask[:, :k]


def listwise_loss(scores: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over lists of the cross-entropy between the softmax of the scores and the bought items' share."""
    logp = torch.log_softmax(scores.masked_fill(~mask, float("-inf")), dim=1)
    share = target / target.sum(1, keepdim=True)
    return -(share * logp.masked_fill(~mask, 0.0)).sum(1).mean()


class RankerFit(SmallFit):
    name = "rank"

    def __init__(self, ranker: Ranker, lr: float = 1e-2, weight_decay: float = 1e-4):
        super().__init__(lr, weight_decay)
        self.ranker = ranker

    def fitted(self) -> list[torch.nn.Parameter]:
        return list(self.ranker.net.parameters())

    def loss(self, batch, stage: str) -> torch.Tensor:
        features, target, mask = batch
        return listwise_loss(self.ranker(features), target, mask)


def fit_ranker(c: Candidates, bought: np.ndarray, val: np.ndarray, trainer_kwargs: dict, epochs: int = 15,
               batch_size: int = 128, seed: int = 0) -> tuple[Ranker, dict]:
    """Fit a Ranker on candidates ``c`` with ``bought`` (bool [m]) as targets; ``val`` (bool [m]) marks the
    pairs of held-out customers. Returns the ranker of the best validation epoch and a summary."""
    from pytorch_lightning.callbacks import EarlyStopping

    torch.manual_seed(seed)
    ranker = Ranker()
    train_f = c.features[~val]
    ranker.mean.copy_(torch.from_numpy(train_f.mean(0)))
    ranker.scale.copy_(torch.from_numpy(train_f.std(0)).clamp(min=1e-3))
    part = lambda keep: Candidates(c.row[keep], c.item[keep], c.features[keep], c.allowed[keep])  # noqa: E731
    train, held = lists(part(~val), bought[~val]), lists(part(val), bought[val])
    if len(train["target"]) == 0:
        raise ValueError("no customer bought any of their candidate items in the ranker's window: nothing "
                         "to learn recommendations from (too few customers, or too short a log)")
    fit = RankerFit(ranker)
    lengths = train["mask"].sum(1).numpy()
    loaders = {"train_dataloaders": DataLoader(TensorDataset(train["features"], train["target"], train["mask"]),
                                               batch_sampler=LengthBuckets(lengths, batch_size, seed),
                                               collate_fn=trimmed)}
    callbacks = []
    if len(held["target"]):
        loaders["val_dataloaders"] = DataLoader(TensorDataset(held["features"], held["target"], held["mask"]),
                                                batch_size=512, collate_fn=trimmed)
        callbacks.append(EarlyStopping(monitor="val_rank", mode="min", patience=3))
    run = pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, callbacks=callbacks,
                     enable_model_summary=False, num_sanity_val_steps=0, **trainer_kwargs)
    run.fit(fit, **loaders)
    fit.restore_best()
    summary = {"lists": int(len(train["target"])), "val_lists": int(len(held["target"])),
               "epochs": int(run.current_epoch), "val_rank": fit.best_loss}
    log.info("ranker fitted on %d customers' candidate lists: %d epochs, validation loss %.4f",
             summary["lists"], summary["epochs"], summary["val_rank"])
    return ranker.eval(), summary
