"""The fused CPU GRU loops of gru_kernel.c: built with the system C compiler on first use, loaded by ctypes.

``load()`` returns the kernel, or None where it cannot be had (no compiler, a torch without an exported
BLAS ``sgemm_``, a failed self-check); engine.model.gru then runs the same recurrence as torch operations.
The library is cached under ``$SEGMENT_ENGINE_CACHE`` (default ``~/.cache/segment-engine``), named by a
hash of the source, the flags and this CPU, so a cache shared between machines never loads code built
for another processor. ``SEGMENT_ENGINE_GRU_KERNEL=torch`` switches the kernel off; ``=c`` makes a failure
to build it an error instead of a warning.

Measured on 2 cores (AVX-512), a CoLES training step of 64 customers: see docs/performance.md.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("gru_kernel.c")
# -ffast-math (glibc's vectorized expf needs it) at compile time only: linked with it, the library would
# switch on flush-to-zero for the whole process when loaded.
COMPILE = ("-O3", "-march=native", "-ffast-math", "-fopenmp", "-fPIC", "-c")
LINK = ("-shared", "-fopenmp")
SETTING = "SEGMENT_ENGINE_GRU_KERNEL"  # auto (default) | c | torch

_ptr = ctypes.c_void_p
_i64 = ctypes.c_int64


class Kernel:
    """The loaded library and the BLAS it multiplies with; float32, CPU, contiguous tensors only."""

    def __init__(self, library: ctypes.CDLL, sgemm: int):
        self.sgemm = _ptr(sgemm)
        self._forward, self._backward = library.gru_forward, library.gru_backward
        self._forward.restype = self._backward.restype = None
        self._forward.argtypes = [_ptr, ctypes.c_int, _i64, _ptr, _ptr, ctypes.c_int] + [_ptr] * 7
        self._backward.argtypes = [_ptr, ctypes.c_int, _i64, _ptr, _ptr, ctypes.c_int] + [_ptr] * 9

    @staticmethod
    def steps(batch_sizes: list[int], offsets: list[int]) -> np.ndarray:
        """int64 [2, T]: the packing's step sizes and offsets, as the C functions read them."""
        return np.array([batch_sizes, offsets], dtype=np.int64).reshape(2, -1)

    def _loop(self, steps: np.ndarray) -> tuple:
        """The arguments both C functions start with: BLAS, threads, step count, sizes and offsets."""
        return self.sgemm, torch.get_num_threads(), steps.shape[1], steps[0].ctypes.data, steps[1].ctypes.data

    def forward(self, gates: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor, steps: np.ndarray
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """gates [N, 3H] (x W_ih^T + b_ih, overwritten with r, z, n) -> (states [N, H], W_hn h_prev + b_hn)."""
        n_rows, hidden = gates.shape[0], w_hh.shape[1]
        out, hidden_n = gates.new_empty(n_rows, hidden), gates.new_empty(n_rows, hidden)
        first = int(steps[0, 0]) if steps.shape[1] else 0
        h0, gh = gates.new_zeros(first, hidden), gates.new_empty(first, 3 * hidden)
        _check(gates, w_hh, b_hh)
        self._forward(*self._loop(steps), hidden, *(t.data_ptr() for t in (gates, w_hh, b_hh, out, hidden_n, h0, gh)))
        return out, hidden_n

    def backward(self, grad_out: torch.Tensor, gates: torch.Tensor, hidden_n: torch.Tensor, out: torch.Tensor,
                 w_hh: torch.Tensor, steps: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (d loss / d hidden projections [N, 3H], d loss / d input projections [N, 3H])."""
        hidden = w_hh.shape[1]
        first = int(steps[0, 0]) if steps.shape[1] else 0
        grad_out = grad_out.contiguous()
        d_hidden, d_input = torch.empty_like(gates), torch.empty_like(gates)
        h0, carry = gates.new_zeros(first, hidden), gates.new_zeros(first, hidden)
        _check(grad_out, gates, hidden_n, out, w_hh)
        self._backward(*self._loop(steps), hidden, *(t.data_ptr() for t in (grad_out, gates, hidden_n, out, h0, w_hh,
                                                                            d_hidden, d_input, carry)))
        return d_hidden, d_input


def _check(*tensors: torch.Tensor) -> None:
    for t in tensors:
        if t.dtype != torch.float32 or t.device.type != "cpu" or not t.is_contiguous():
            raise ValueError(f"the fused GRU kernel takes contiguous float32 CPU tensors, got {t.dtype} on "
                             f"{t.device} (contiguous: {t.is_contiguous()})")


def _torch_sgemm() -> int:
    """Address of the BLAS sgemm_ (LP64) inside torch's CPU library: the one torch's own matmuls use."""
    lib = Path(torch.__file__).parent / "lib"
    for name in ("libtorch_cpu.so", "libtorch_cpu.dylib"):
        if (lib / name).exists():
            address = ctypes.cast(ctypes.CDLL(str(lib / name)).sgemm_, ctypes.c_void_p).value
            if address:
                return address
    raise OSError(f"no libtorch_cpu with an exported sgemm_ in {lib}")


def _cpu_identity() -> str:
    """What decides which instructions -march=native may use: the CPU model and its flags."""
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    keep = [line for line in info if line.startswith(("model name", "flags", "Features"))]
    return "\n".join(dict.fromkeys(keep)) + platform.machine()


def _cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "segment-engine"
    return Path(os.environ.get("SEGMENT_ENGINE_CACHE", default))


def _build() -> Path:
    """Compile gru_kernel.c unless a library built from the same source, flags and CPU is cached."""
    compiler = os.environ.get("CC", "cc")
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + repr((compiler, COMPILE, LINK)).encode() + _cpu_identity().encode()).hexdigest()[:16]
    target = _cache_dir() / f"gru_kernel-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:  # several processes may build at once
        built, obj = Path(work) / target.name, Path(work) / "gru_kernel.o"
        done = subprocess.run([compiler, *COMPILE, str(SOURCE), "-o", str(obj)], capture_output=True, text=True)
        if done.returncode == 0:
            for libraries in (["-lmvec", "-lm"], ["-lm"]):  # libmvec: glibc's vectorized expf
                done = subprocess.run([compiler, *LINK, str(obj), "-o", str(built), *libraries],
                                      capture_output=True, text=True)
                if done.returncode == 0:
                    break
        if done.returncode != 0:
            raise OSError(f"{compiler} could not build {SOURCE.name}: {done.stderr.strip()[-500:]}")
        os.replace(built, target)
    return target


def _self_check(kernel: Kernel) -> None:
    """Both passes on a small packed batch against the torch recurrence (catches a BLAS of another ABI)."""
    from engine.model.gru import Packing, _GRULayer

    generator = torch.Generator().manual_seed(0)
    hidden, lengths = 8, torch.tensor([5, 3, 3, 1])
    packing = Packing.build(lengths, 5)
    x, w_ih, w_hh, b_ih, b_hh = (torch.randn(*shape, generator=generator, dtype=torch.float64)
                                 for shape in ((int(lengths.sum()), 4), (24, 4), (24, hidden), (24,), (24,)))
    weights = [t.requires_grad_() for t in (x, w_ih, w_hh, b_ih, b_hh)]
    grad = torch.randn(int(lengths.sum()), hidden, generator=generator, dtype=torch.float64)
    expected = _GRULayer.apply(*weights, packing, None)
    expected_grads = torch.autograd.grad(expected, weights, grad)
    weights32 = [t.detach().float().requires_grad_() for t in weights]
    got = _GRULayer.apply(*weights32, packing, kernel)
    got_grads = torch.autograd.grad(got, weights32, grad.float())
    for name, a, b in zip(("states", "x", "w_ih", "w_hh", "b_ih", "b_hh"), (expected, *expected_grads),
                          (got, *got_grads), strict=True):
        if not torch.allclose(a.float(), b, rtol=1e-4, atol=1e-5):
            raise OSError(f"self-check failed: {name} differs from the torch recurrence by "
                          f"{float((a.float() - b).abs().max()):.3g}")


@functools.cache
def load() -> Kernel | None:
    """The fused kernel, built and checked once per process; None (with one warning) where unavailable."""
    setting = os.environ.get(SETTING, "auto")
    if setting not in ("auto", "c", "torch"):
        raise ValueError(f"{SETTING}={setting!r}: expected auto, c or torch")
    if setting == "torch":
        return None
    try:
        kernel = Kernel(ctypes.CDLL(str(_build())), _torch_sgemm())
        _self_check(kernel)
    except (OSError, AttributeError, subprocess.SubprocessError) as err:
        if setting == "c":
            raise
        log.warning("the fused CPU GRU kernel is unavailable (%s); the recurrence runs as torch operations, "
                    "slower (%s=torch silences this)", err, SETTING)
        return None
    return kernel
