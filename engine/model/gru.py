"""A GRU over packed sequences that does no work on padding, with a hand-written backward for the CPU.

Histories in a batch differ in length (CoLES views are 16-64 events, most customers have fewer than the
embedding window), so a padded batch is mostly padding. Packing sorts the rows by length, longest first,
and lays the valid events out time-major: step t holds the first ``batch_sizes[t]`` rows, those still
running. Embedding, dropout and the recurrence then touch valid events only.

On CUDA the packed batch goes to cuDNN (``nn.GRU`` on a ``PackedSequence``). On the CPU, PyTorch's packed
GRU records a dozen autograd nodes per step and is no faster than padding, so ``gru_layer`` runs the
recurrence itself: one GEMM for the input projection of every event, one small GEMM per step, gates
updated in place, and a backward pass through time written out (one GEMM per step, the weight gradients
as two large GEMMs at the end). Same weights and equations as ``nn.GRU`` (gate order r, z, n).

In float32 (training's dtype) each step's elementwise work runs fused in C (engine.model.gru_kernel: one
BLAS product and one loop a step, 21% off a CoLES training step); the torch operations below are the
reference it is tested against, and what runs in float64 or where the kernel cannot be built.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.model import gru_kernel
from engine.model.gru_kernel import Kernel


@dataclass
class Packing:
    """Where each valid event of a right-padded batch [B, L] goes in the packed, time-major layout.

    flat:        int64 [N]  index into the padded batch flattened to [B * L], in packed order
    batch_sizes: list[int]  rows still running at each step (non-increasing)
    offsets:     list[int]  first packed index of each step
    order:       int64 [B]  padded row of each sorted position (longest first, stable)
    rank:        int64 [B]  sorted position of each padded row (the inverse of order)
    last:        int64 [B]  packed index of each padded row's last event
    previous:    int64 [N - batch_sizes[0]]  packed index of the previous step's state, for steps >= 1
    """

    flat: torch.Tensor
    batch_sizes: list[int]
    offsets: list[int]
    order: torch.Tensor
    rank: torch.Tensor
    last: torch.Tensor
    previous: torch.Tensor

    @classmethod
    def build(cls, lengths: torch.Tensor, width: int) -> Packing:
        """lengths: int64 [B] valid events per row (>= 1), rows right-padded to ``width``."""
        lengths = lengths.detach().to("cpu", torch.int64).clamp(1, width)
        order = torch.argsort(lengths, descending=True, stable=True)
        ordered = lengths[order]
        steps = torch.arange(int(ordered[0]) if len(ordered) else 0)
        running = ordered[None, :] > steps[:, None]  # [T, B]
        step, position = running.nonzero(as_tuple=True)  # time-major, sorted position ascending within a step
        sizes = running.sum(1)
        offsets = torch.cumsum(sizes, 0) - sizes
        rank = torch.empty_like(order)
        rank[order] = torch.arange(len(order))
        later = step >= 1
        previous = offsets[step[later] - 1] + position[later]
        return cls(order[position] * width + step, sizes.tolist(), offsets.tolist(), order, rank,
                   offsets[lengths - 1] + rank, previous)

    def index(self, rows: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """int64 [K]: packed index of event ``steps[k]`` (< that row's length) of padded row ``rows[k]``."""
        offsets = torch.tensor(self.offsets, dtype=torch.int64, device=self.rank.device)
        return offsets[steps] + self.rank[rows]

    def to(self, device) -> Packing:
        return Packing(self.flat.to(device), self.batch_sizes, self.offsets, self.order.to(device),
                       self.rank.to(device), self.last.to(device), self.previous.to(device))


def _recur(gates: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor, packing: Packing,
           save: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The recurrence over precomputed input projections ``gates`` [N, 3H], overwritten with (r, z, n).

    Returns the packed states [N, H] and, when ``save``, the hidden projection of the n gate [N, H].
    tanh(x) is computed as 2 sigmoid(2x) - 1 (torch's CPU tanh is 3x slower than its sigmoid), with the
    factor 2 folded into the n gate's input projection and weights, so a step is nine operations."""
    n_rows, hidden = gates.shape[0], w_hh.shape[1]
    scale = torch.ones(3 * hidden, dtype=w_hh.dtype, device=w_hh.device)
    scale[2 * hidden:] = 2
    w_t, bias = (w_hh * scale[:, None]).t(), b_hh * scale
    gates[:, 2 * hidden:] *= 2
    out = gates.new_empty(n_rows, hidden)
    hidden_all = gates.new_empty(n_rows if save else packing.batch_sizes[0] if n_rows else 0, 3 * hidden)
    h = gates.new_zeros(packing.batch_sizes[0] if n_rows else 0, hidden)
    for size, start in zip(packing.batch_sizes, packing.offsets, strict=True):
        h_prev, g = h[:size], gates[start:start + size]
        gh = torch.addmm(bias, h_prev, w_t, out=hidden_all[start:start + size] if save else hidden_all[:size])
        rz = g[:, :2 * hidden].add_(gh[:, :2 * hidden]).sigmoid_()
        n = g[:, 2 * hidden:].addcmul_(rz[:, :hidden], gh[:, 2 * hidden:]).sigmoid_().mul_(2).sub_(1)
        h = torch.addcmul(n, rz[:, hidden:], h_prev - n, out=out[start:start + size])
    return out, hidden_all[:, 2 * hidden:] * 0.5 if save else None


class _GRULayer(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w_ih, w_hh, b_ih, b_hh, packing: Packing, kernel: Kernel | None):
        gates = torch.addmm(b_ih, x, w_ih.t())
        save = any(ctx.needs_input_grad)
        if kernel is not None:
            ctx.steps = kernel.steps(packing.batch_sizes, packing.offsets)
            out, hidden_n = kernel.forward(gates, w_hh.contiguous(), b_hh.contiguous(), ctx.steps)
        else:
            out, hidden_n = _recur(gates, w_hh, b_hh, packing, save)
        if save:
            ctx.save_for_backward(x, w_ih, w_hh, gates, hidden_n, out)
            ctx.packing, ctx.kernel = packing, kernel
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, w_ih, w_hh, gates, hidden_n, out = ctx.saved_tensors
        packing: Packing = ctx.packing
        hidden, first = w_hh.shape[1], packing.batch_sizes[0]
        previous = out[packing.previous]  # each row's state before its step, for steps >= 1
        if ctx.kernel is not None:
            d_hidden, d_input = ctx.kernel.backward(grad_out, gates, hidden_n, out, w_hh.contiguous(), ctx.steps)
            return (d_input @ w_ih, d_input.t() @ x, d_hidden[first:].t() @ previous, d_input.sum(0),
                    d_hidden.sum(0), None, None)
        h_prev = torch.zeros_like(out)
        h_prev[first:] = previous
        r, z, n = gates[:, :hidden], gates[:, hidden:2 * hidden], gates[:, 2 * hidden:]
        # Everything but d loss / d h is known from the forward pass: with h = n + z (h_prev - n),
        # d pre-activations = dh * factor, so the factors are computed once for all steps, vectorized.
        dn_factor = torch.addcmul(torch.ones_like(n), n, n, value=-1).mul_(1 - z)
        factor = torch.empty_like(gates)
        torch.mul(r, 1 - r, out=factor[:, :hidden]).mul_(hidden_n).mul_(dn_factor)
        torch.mul(z, 1 - z, out=factor[:, hidden:2 * hidden]).mul_(h_prev - n)
        torch.mul(dn_factor, r, out=factor[:, 2 * hidden:])
        d_hidden = torch.empty_like(gates)  # d loss / d (h_prev W_hh^T + b_hh), per packed row
        dh_all = torch.empty_like(out)  # d loss / d h, per packed row
        carry = grad_out.new_zeros(first, hidden)  # d loss / d h_prev from the step after
        for size, start in zip(reversed(packing.batch_sizes), reversed(packing.offsets), strict=True):
            rows = slice(start, start + size)
            dh = torch.add(grad_out[rows], carry[:size], out=dh_all[rows])
            torch.mul(factor[rows].view(size, 3, hidden), dh[:, None], out=d_hidden[rows].view(size, 3, hidden))
            torch.addmm(dh * z[rows], d_hidden[rows], w_hh, out=carry[:size])
        d_input = d_hidden.clone()  # d loss / d (x W_ih^T + b_ih): the same but for the n gate
        torch.mul(dh_all, dn_factor, out=d_input[:, 2 * hidden:])
        d_w_hh = d_hidden[first:].t() @ previous
        return d_input @ w_ih, d_input.t() @ x, d_w_hh, d_input.sum(0), d_hidden.sum(0), None, None


def gru_layer(x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor,
              packing: Packing) -> torch.Tensor:
    """Packed inputs x [N, D] -> packed states [N, H] of one GRU layer (``nn.GRU`` weights and gate order).

    Runs in the weights' dtype, autocast or not: bf16 GEMMs measured no faster here (the casts cost what the
    products saved), and the recurrence keeps its state in full precision."""
    with torch.autocast(x.device.type, enabled=False):
        fused = x.device.type == "cpu" and w_ih.dtype == torch.float32
        return _GRULayer.apply(x.to(w_ih.dtype), w_ih, w_hh, b_ih, b_hh, packing, gru_kernel.load() if fused else None)
