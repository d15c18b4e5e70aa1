"""The event order of the store: by customer, then time, stable (ties keep their log order)."""

from __future__ import annotations

import numpy as np
import torch


def sort_events(customer: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """int64 [n] permutation ordering events by (customer, ts), stable.

    customer: int32 or int64 [n] dense codes >= 0; ts: int64 [n] epoch seconds. Uses torch's parallel radix
    sort, about twice numpy's stable argsort on two cores. A log already in time order (the usual case) needs
    only a stable sort by customer; otherwise both are packed into one int64 key."""
    n = len(ts)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if np.all(ts[1:] >= ts[:-1]):
        key = customer
    else:
        t0 = int(ts.min())
        bits = max(1, (int(ts.max()) - t0).bit_length())
        if int(customer.max()).bit_length() + bits > 62:
            return np.lexsort((ts, customer))
        key = (customer.astype(np.int64) << bits) | (ts - t0)
    if np.all(key[1:] >= key[:-1]):
        return np.arange(n, dtype=np.int64)
    if not key.flags.writeable:  # torch.from_numpy wants a writable array
        key = key.copy()
    _, order = torch.sort(torch.from_numpy(key), stable=True)
    return order.numpy()
