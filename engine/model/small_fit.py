"""Fitting a few parameters on precomputed inputs with Lightning, keeping those of the best validation epoch:
the shape the forecasting head (engine.model.head) and the recommendation rankers (engine.recommend.ranker)
share."""

from __future__ import annotations

import pytorch_lightning as pl
import torch


class SmallFit(pl.LightningModule):
    """Subclasses define ``fitted()`` (the parameters trained) and ``loss(batch, stage)`` (logged as
    ``{stage}_{name}``); validation keeps a copy of the parameters at the lowest ``val_{name}``."""

    name = "loss"

    def __init__(self, lr: float, weight_decay: float):
        super().__init__()
        self.lr, self.weight_decay = lr, weight_decay
        self.best: tuple[float, list[torch.Tensor]] | None = None  # the best validation loss and its weights

    def _logged(self, batch, stage: str) -> torch.Tensor:
        loss = self.loss(batch, stage)
        self.log(f"{stage}_{self.name}", loss, prog_bar=stage == "train", batch_size=len(batch[-1]))
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._logged(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._logged(batch, "val")

    def on_validation_epoch_end(self) -> None:
        loss = float(self.trainer.callback_metrics[f"val_{self.name}"])
        if self.best is None or loss < self.best[0]:
            self.best = (loss, [p.detach().clone() for p in self.fitted()])

    def restore_best(self) -> None:
        if self.best is not None:
            with torch.no_grad():
                for p, best in zip(self.fitted(), self.best[1], strict=True):
                    p.copy_(best)

    @property
    def best_loss(self) -> float:
        return self.best[0] if self.best is not None else float("nan")

    def configure_optimizers(self):
        return torch.optim.AdamW(self.fitted(), lr=self.lr, weight_decay=self.weight_decay)
