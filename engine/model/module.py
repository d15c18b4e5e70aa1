"""The LightningModule: event encoder trained contrastively (CoLES), with an optional forecasting head.

CoLES: random slices of one customer's history are positives, slices of other customers in the batch are
negatives (multi-positive InfoNCE on cosine similarity). Beside it, each view's embedding predicts the items
of the customer's other views (cosine logits against a vector per item), so that customers who buy alike lie
close: what lookalike audiences need. The forecasting head reads the recency, frequency and spend context
of a history cut at T (and, with head_state, the encoder state) and predicts the customer's purchase
process as of T (p_alive, transactions and spend per day while alive; see engine.forecast.process). It is
fitted after the encoder, on windows of many lengths (engine.model.head): one model answers every horizon.
"""

from __future__ import annotations

from collections.abc import Callable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from engine.data.memory import keep_freed_memory
from engine.model.encoder import EventEmbedding
from engine.model.features import CONTEXT_FEATURES
from engine.model.gru import Packing
from engine.model.losses import coles_loss, item_loss

HEAD_WIDTH = 64
HEADS = 5
INITIAL_ALIVE_LOGIT = 3.0  # p_alive 0.95 before training
TENURE, COUNT, SPEND = 2, 3, 10  # columns of the forecast context (engine.model.datamodule.forecast_context)


class CustomerEncoder(pl.LightningModule):
    """Batches from engine.model.datamodule -> L2-normalised embeddings [B, out_dim] (and forecasts)."""

    def __init__(self, vocab_sizes: list[int], encoder: Callable[..., nn.Module], dim: int = 128,
                 out_dim: int = 64, temperature: float = 0.1, lr: float = 2e-3, weight_decay: float = 1e-4,
                 dropout: float = 0.1, forecast_weight: float = 0.0, spend_scale: float = 1.0,
                 item_weight: float = 1.0, item_head_size: int = 8192, unit: str = "basket",
                 head_state: bool = False, attributes: int = 0):
        super().__init__()
        self.save_hyperparameters(ignore=["encoder"])
        self.embed = EventEmbedding(vocab_sizes, dim, dropout)
        self.encoder = encoder(dim=dim)
        self.project = nn.Linear(dim, out_dim)
        # Only the parts an objective trains are built: DDP requires every parameter to get a gradient.
        if forecast_weight:
            # The encoder state is left out by default: fitted with it, the head learnt customers by heart
            # (19-week forecast of a grocery log: MAE 8.50 with the state, 8.37 without).
            # the customers' static attributes (data.attributes) are inputs of the head beside the context
            width = (dim if head_state else 0) + CONTEXT_FEATURES + attributes
            # HEADS members fitted side by side from different starts; the forecast is their mean (a fit on
            # a few thousand customers moves with its start more than the margins it is judged on). Bagged
            # members (Poisson(1) weights per customer) steadied the 19-week forecast of a grocery log (MAE
            # 8.379 ± 0.030 vs 8.422 ± 0.096) but lost at 4 and 13 weeks on both logs: not kept
            self.head = nn.ModuleList(
                nn.Sequential(nn.Linear(width, HEAD_WIDTH), nn.GELU(), nn.Linear(HEAD_WIDTH, HEAD_WIDTH), nn.GELU(),
                              nn.Linear(HEAD_WIDTH, 3)) for _ in range(HEADS))
            for member in self.head:  # each starts at the prior below and learns corrections
                nn.init.zeros_(member[-1].weight)
                nn.init.zeros_(member[-1].bias)
            # Gamma-Poisson prior of the rate, (transactions + r) / (tenure + alpha), and of the value per
            # transaction, (spend + c x mean) / (transactions + c): log r, log alpha (days), log c
            self.log_prior = nn.Parameter(torch.tensor([0.0, 1.6, 0.0]))
            # fitted after the encoder, on pairs of its frozen states (engine.model.head): no gradient before
            for p in (*self.head.parameters(), self.log_prior):
                p.requires_grad_(False)
        # the purchase process past the log's span: its length (days) and the drop-out beyond (per day)
        self.register_buffer("span_days", torch.zeros((), dtype=torch.float64))
        self.register_buffer("decay_per_day", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean_value", torch.ones(()))  # spend per transaction over the base, money
        # The context's standardisation, from the training base (set_context_scale); saved with the weights.
        self.register_buffer("context_mean", torch.zeros(CONTEXT_FEATURES + attributes))
        self.register_buffer("context_scale", torch.ones(CONTEXT_FEATURES + attributes))
        if attributes:  # the attribute inputs of a customer the attributes table does not know (a store without them)
            self.register_buffer("attribute_unknown", torch.zeros(attributes))
        # Item affinity: cosine logits between the embedding and one vector per (frequent) item.
        self.n_head_items = min(vocab_sizes[1], item_head_size)
        if item_weight:
            self.item_vectors = nn.Parameter(torch.randn(self.n_head_items, out_dim) * 0.1)
        self.item_weight = item_weight
        # Forecast recalibration on the latest complete horizon (set by engine.pipeline.calibrate_forecast).
        self.register_buffer("calibration", torch.ones(2))
        self.temperature, self.lr, self.weight_decay = temperature, lr, weight_decay
        self.forecast_weight, self.spend_scale = forecast_weight, spend_scale

    def state(self, batch: dict, rows: torch.Tensor | None = None, steps: torch.Tensor | None = None) -> torch.Tensor:
        """float [B, dim]: the pooled encoder state of each row; with ``rows`` and ``steps`` (int64 [K]),
        the state of each prefix ``rows[k]`` up to event ``steps[k]`` instead."""
        if hasattr(self.encoder, "forward_packed"):  # embed and encode the valid events only
            packing = Packing.build(batch["lengths"], batch["cat"].shape[1]).to(batch["cat"].device)
            events = self.embed(batch["cat"].flatten(0, 1)[packing.flat], batch["num"].flatten(0, 1)[packing.flat])
            at = None if rows is None else packing.index(rows.to(packing.order.device), steps.to(packing.order.device))
            return self.encoder.forward_packed(events, packing, at)
        if rows is not None:  # the prefixes as rows of their own (the padding past each is ignored)
            batch = {"cat": batch["cat"][rows], "num": batch["num"][rows], "lengths": steps + 1}
        return self.encoder(self.embed(batch["cat"], batch["num"]), batch["lengths"])

    def embedding(self, state: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.project(state).float(), dim=-1)

    def set_context_scale(self, context: torch.Tensor) -> None:
        """Standardise the forecast context [N, CONTEXT_FEATURES] by the mean and spread of these rows."""
        context = context.double()
        self.context_mean.copy_(context.mean(0))
        self.context_scale.copy_(context.std(0).clamp(min=1e-3))
        count, spend = torch.expm1(context[:, COUNT]).sum(), torch.expm1(context[:, SPEND]).sum()
        self.mean_value.fill_(float(spend / count) if count > 0 else self.spend_scale)

    @property
    def decay(self) -> float:
        """The drop-out per day of an alive customer past the span (engine.forecast.process)."""
        return float(self.decay_per_day)

    @property
    def span(self) -> float:
        """Days of the longest window the head was fitted on: the log's span."""
        return float(self.span_days)

    def forecast(self, state: torch.Tensor, context: torch.Tensor, member: int | None = None) -> dict[str, torch.Tensor]:
        """Per row: log transactions per day while alive, logit of p_alive, log spend per day while alive
        (in spend_scale units): the mean of the head's members, or one ``member``'s."""
        raw = context.to(self.context_mean.device).float()
        if raw.shape[1] < len(self.context_mean):  # no attributes for these customers: unknown
            raw = torch.cat([raw, self.attribute_unknown.expand(len(raw), -1)], dim=1)
        scaled = (raw - self.context_mean) / self.context_scale
        inputs = torch.cat([state, scaled.to(state.dtype)], dim=-1) if self.hparams.head_state else scaled
        if member is None:
            out = torch.stack([m(inputs) for m in self.head]).mean(0).float()
        else:
            out = self.head[member](inputs).float()
        count, tenure, spend = torch.expm1(raw[:, COUNT]), torch.expm1(raw[:, TENURE]), torch.expm1(raw[:, SPEND])
        r, alpha, c = self.log_prior.exp()
        log_rate = torch.log((count + r) / (tenure + alpha)) + out[:, 0]
        log_value = torch.log((spend + c * self.mean_value) / (count + c) / self.spend_scale)
        return {"log_rate": log_rate.clamp(-14, 6), "alive_logit": out[:, 1] + INITIAL_ALIVE_LOGIT,
                "log_spend_rate": (log_rate + log_value + out[:, 2]).clamp(-14, 12)}

    def forward(self, batch: dict) -> torch.Tensor:
        return self.embedding(self.state(batch))

    def _losses(self, batch: dict, stage: str) -> torch.Tensor:
        views = batch["views"]
        states = self.state(views)
        z = self.embedding(states)
        loss = coles_loss(z, batch["labels"], self.temperature)
        self.log(f"{stage}_coles", loss, prog_bar=stage == "train", batch_size=len(batch["rows"]))
        if self.item_weight:
            logits = z @ F.normalize(self.item_vectors, dim=-1).T / self.temperature
            i_loss = item_loss(logits, views, batch["labels"], len(batch["rows"]))
            self.log(f"{stage}_items", i_loss, prog_bar=stage == "train", batch_size=len(batch["rows"]))
            loss = loss + self.item_weight * i_loss
        self.log(f"{stage}_loss", loss, batch_size=len(batch["rows"]), sync_dist=stage == "val")
        return loss

    def setup(self, stage: str) -> None:
        keep_freed_memory()  # every step frees and allocates the same tensors: reuse them, don't map them anew

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._losses(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._losses(batch, "val")

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        state = self.state(batch)
        out = {"rows": batch["rows"], "embedding": self.embedding(state)}
        if self.forecast_weight:
            f = self.forecast(state, batch["context"])
            out["p_alive"] = torch.sigmoid(f["alive_logit"])
            out["rate"] = f["log_rate"].exp() * self.calibration[0]
            out["spend_rate"] = f["log_spend_rate"].exp() * self.spend_scale * self.calibration[1]
        return out

    def configure_optimizers(self):
        params = list(self.parameters())
        # the fused kernel: one pass over all parameters (0.16 ms a step on 2 CPU cores, the default 1 ms)
        fused = all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64) for p in params)
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay, fused=fused or None)
