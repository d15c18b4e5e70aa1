"""Event features -> sequence encoder -> pooled customer state.

Each event is the sum of embeddings of its categorical fields plus a linear encoding of its numbers; a GRU
or a Transformer runs over the events; the state is pooled (GRU: last valid step, Transformer: masked mean).
"""

from __future__ import annotations

import torch
from torch import nn

from engine.model.features import N_NUMERIC


class EventEmbedding(nn.Module):
    """cat int64 [B, L, 4] + num float32 [B, L, N_NUMERIC] -> float [B, L, dim]."""

    def __init__(self, vocab_sizes: list[int], dim: int, dropout: float = 0.1):
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(size, dim, padding_idx=0) for size in vocab_sizes)
        self.numeric = nn.Linear(N_NUMERIC, dim)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        x = self.numeric(num)
        for i, table in enumerate(self.tables):
            x = x + table(cat[..., i])
        return self.dropout(self.norm(x))


class GRUEncoder(nn.Module):
    """Events [B, L, dim] -> state [B, dim]: the GRU output at each row's last valid event."""

    def __init__(self, dim: int, num_layers: int = 1, dropout: float = 0.0):
        super().__init__()
        self.rnn = nn.GRU(dim, dim, num_layers=num_layers, batch_first=True,
                          dropout=dropout if num_layers > 1 else 0.0)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)  # causal, so right padding does not reach the last valid step
        last = (lengths - 1).clamp(min=0).to(out.device)
        return out[torch.arange(out.shape[0], device=out.device), last]


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
