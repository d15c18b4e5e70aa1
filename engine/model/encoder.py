"""Event features -> sequence encoder -> pooled customer state.

Each event is the sum of embeddings of its categorical fields plus a linear encoding of its numbers; a GRU
or a Transformer runs over the events; the state is pooled (GRU: last valid step, Transformer: masked mean).
An encoder with ``forward_packed`` takes the valid events only (engine.model.gru.Packing), so the event
embedding skips padding too.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from engine.model.dropout import Dropout
from engine.model.dropout import dropout as apply_dropout
from engine.model.features import N_NUMERIC
from engine.model.gru import Packing, gru_layer


class EventEmbedding(nn.Module):
    """cat int64 [B, L, 4] + num float32 [B, L, N_NUMERIC] -> float [B, L, dim]."""

    def __init__(self, vocab_sizes: list[int], dim: int, dropout: float = 0.1):
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(size, dim, padding_idx=0) for size in vocab_sizes)
        self.numeric = nn.Linear(N_NUMERIC, dim)
        self.norm = nn.LayerNorm(dim)
        self.dropout = Dropout(dropout)

    def forward(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        # nn.Linear's weight gradient here is a [dim, events] x [events, N_NUMERIC] product, which BLAS runs
        # 3x slower than the transposed one that a contiguous copy of weight.t() gets from autograd (1 ms
        # of a 36 ms CPU training step); same values.
        flat = torch.addmm(self.numeric.bias, num.reshape(-1, num.shape[-1]), self.numeric.weight.t().contiguous())
        x = flat.view(*num.shape[:-1], flat.shape[-1])
        for i, table in enumerate(self.tables):
            x = x.add_(table(cat[..., i]))  # in place: no backward here needs x itself
        return self.dropout(self.norm(x))


class GRUEncoder(nn.Module):
    """Events -> state [B, dim]: the GRU state after each row's last valid event.

    Runs on packed events (no work on padding): cuDNN on CUDA; on the CPU, engine.model.gru's recurrence for
    training and PyTorch's packed kernel for inference.
    The parameters are those of ``nn.GRU``, so checkpoints do not depend on the device."""

    def __init__(self, dim: int, num_layers: int = 1, dropout: float = 0.0):
        super().__init__()
        self.rnn = nn.GRU(dim, dim, num_layers=num_layers, batch_first=True,
                          dropout=dropout if num_layers > 1 else 0.0)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x: float [B, L, dim] right-padded, lengths: int64 [B]."""
        packing = Packing.build(lengths, x.shape[1]).to(x.device)
        return self.forward_packed(x.flatten(0, 1)[packing.flat], packing)

    def forward_packed(self, x: torch.Tensor, packing: Packing, at: torch.Tensor | None = None,
                       native: bool | None = None) -> torch.Tensor:
        """x: float [N, dim], the valid events in ``packing``'s order -> state [B, dim] in row order, or the
        states at packed indices ``at`` [K] (the GRU is causal: a prefix's state is its last event's).
        ``native``: nn.GRU on a PackedSequence, by default on CUDA (cuDNN) and wherever no gradient is
        needed (inference: PyTorch's packed CPU kernel is the faster one without a backward pass)."""
        if (x.is_cuda or not torch.is_grad_enabled()) if native is None else native:
            sizes = torch.tensor(packing.batch_sizes, dtype=torch.int64)
            # in the weights' dtype whatever the autocast: cuDNN takes bf16 RNN inputs only from 9.13 on
            with torch.autocast(x.device.type, enabled=False):
                packed = PackedSequence(x.to(self.rnn.weight_ih_l0.dtype), sizes, packing.order, packing.rank)
                out, h = self.rnn(packed)
            return h[-1] if at is None else out.data[at]
        for layer in range(self.rnn.num_layers):
            if layer:
                x = apply_dropout(x, self.rnn.dropout, self.training)
            x = gru_layer(x, *(getattr(self.rnn, f"{name}_l{layer}")
                               for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")), packing)
        return x[packing.last if at is None else at]


class TransformerEncoder(nn.Module):
    """Events [B, L, dim] -> state [B, dim]: pre-norm Transformer with learned positions, masked mean pool."""

    def __init__(self, dim: int, num_layers: int = 2, heads: int = 4, dropout: float = 0.1, max_len: int = 1024):
        super().__init__()
        self.position = nn.Embedding(max_len, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.max_len = max_len

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        width = x.shape[1]
        if width > self.max_len:
            raise ValueError(f"sequence of {width} events exceeds model.max_len={self.max_len}")
        steps = torch.arange(width, device=x.device)
        pad = steps[None, :] >= lengths.to(x.device)[:, None]
        h = self.encoder(x + self.position(steps)[None], src_key_padding_mask=pad)
        keep = (~pad).unsqueeze(-1).to(h.dtype)
        return (h * keep).sum(1) / keep.sum(1).clamp(min=1.0)
