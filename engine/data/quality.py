"""The data-quality report of a run (``data_quality.json``): what each source file and each channel of the log
held, counted while the log is read (engine.data.events) and packed (engine.data.store), over the columns
already in memory: no second parse, no loop over rows or customers.

For each file, each channel and the whole log: rows read and dropped (and why), duplicates, the null share of
each column, out-of-order events, timestamps before the floor or after the run, unknown event types,
negative amounts, items without a category, customers and the events-per-customer distribution; with several
files, the customers they share; with several sources (data.sources), each source's figures, its customers and
the customers each pair of sources shares, and the rows whose key the id map lacks or maps to several
customers.
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.data.vocab import UNKNOWN, DictionaryCodes, rows_where

COLUMNS = ("customer_id", "ts", "event_type", "item_id", "category", "amount", "quantity", "channel")
DROPPED = ("null_customer", "null_event_type", "null_ts", "ts_not_finite", "ts_out_of_range",
           "unaddressable_customer", "unmapped_customer", "conflicting_customer")
EVENTS = ("duplicates", "out_of_order", "ts_before_floor", "ts_in_future", "unknown_event_type",
          "negative_amount", "negative_purchase_amount", "item_without_category",
          "unmapped_kept")  # unmapped_kept: rows of a key the id map lacks, kept as '<source>:<key>' (unmapped=keep)
MAX_CHANNELS = 20  # channels listed one by one; the others are summed into one entry
MAX_PAIRED_FILES = 8  # up to this many files, the customers of every pair of them are counted
MAX_CUSTOMER_CELLS = 1 << 24  # customers x channels, at most, for counting each channel's customers
SHOW_TYPES = 10  # unknown event types named per file


def utc(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def distribution(events: np.ndarray) -> dict:
    """The events-per-customer figures of ``events`` (int [n_customers], each >= 1)."""
    if len(events) == 0:
        return {"customers": 0}
    q = np.round(np.percentile(events, [25, 50, 75, 99]), 2).tolist()
    return {"customers": len(events), "min": int(events.min()), "p25": q[0], "median": q[1], "p75": q[2],
            "p99": q[3], "max": int(events.max()),
            "mean": round(float(events.mean()), 3), "share_one_event": round(float(np.mean(events == 1)), 6)}


class LogQuality:
    """The figures of one read of a log. ``tallies[figure]`` is int64 [n_files, n_channels]: the rows of each
    file and channel (``channels``, in order of first sight, None for a null channel) that the figure counts.

    files: the log's files, in read order; run_at: epoch s, the read's start (later timestamps are in the
    future); floor: epoch s, the earliest plausible timestamp; known_types: event types that are not unknown;
    sources: the source of each file (data.sources' names), None for a log of one source."""

    def __init__(self, files: list[str], run_at: int, floor: int, known_types: list[str],
                 sources: list[str] | None = None):
        self.files, self.run_at, self.floor = list(files), run_at, floor
        self.sources = list(sources) if sources else ["events"] * len(self.files)
        self.known = pa.array(sorted(set(known_types)), pa.string())
        self.channels: list[str | None] = []
        self.tallies: dict[str, np.ndarray] = {}
        self.absent: list[list[str]] = [[] for _ in self.files]
        self.unknown_types: list[dict[str, int]] = [{} for _ in self.files]
        self.customers: list[tuple[pa.Array, np.ndarray] | None] = [None] * len(self.files)
        self.starts = np.zeros(len(self.files) + 1, dtype=np.int64)  # the log row where each file's kept rows start
        self.events_per_customer: dict = {}
        self.channel_customers: dict[int, dict] = {}
        self.file, self.n, self.rows = 0, 0, 0
        self.late = (np.zeros(0, np.int64), np.zeros(0, np.int64))  # out-of-order events: (position, log row)

    # -- reading: one file at a time ----------------------------------------------------------------------
    def begin(self, file_index: int, channel: pa.ChunkedArray) -> None:
        """Start counting the rows of files[file_index]; channel: its channel column, dictionary-encoded. The
        channel of a row is found from its chunk's dictionary indices when a figure counts it (``rows``: one
        index into ``channels`` when the file has one channel, else (start, indices, channel of each
        dictionary entry) per chunk)."""
        self.file, self.n = file_index, len(channel)
        if channel.null_count == self.n:
            self.rows = self._channel(None)
        else:
            codes = DictionaryCodes.of(channel)
            names = codes.tokens.to_pylist()
            table = np.array([self._channel(name) for name in names]
                             + [self._channel(None) if channel.null_count else 0], dtype=np.int64)
            if len(names) == 1 and channel.null_count == 0:
                self.rows = int(table[0])
            else:
                starts = np.cumsum([0] + [len(indices) for indices, _ in codes.chunks])
                self.rows = [(int(start), indices, table[to_token])
                             for start, (indices, to_token) in zip(starts[:-1], codes.chunks, strict=True)]
        self._table("rows_read")[file_index] += self._per_channel(None)

    def _channel(self, name: str | None) -> int:
        """The index of a channel name in ``channels``, added when new (UNKNOWN, the store's rare or null
        channel, is None)."""
        name = None if name == UNKNOWN else name
        if name not in self.channels:
            self.channels.append(name)
        return self.channels.index(name)

    def count(self, figure: str, rows: np.ndarray | None) -> None:
        """Add the current file's rows selected by ``rows`` (bool [n] or sorted row numbers; None: none) to
        ``figure``."""
        if rows is not None:
            self._table(figure)[self.file] += self._per_channel(rows)

    def _per_channel(self, rows: np.ndarray | None) -> np.ndarray:
        """int64 [n_channels]: the current file's rows selected by ``rows`` (bool [n], sorted row numbers, or
        None for every row), by channel: a bincount of their dictionary indices per chunk."""
        counts = np.zeros(len(self.channels), dtype=np.int64)
        if isinstance(self.rows, int):
            counts[self.rows] = self.n if rows is None else rows.sum() if rows.dtype == bool else len(rows)
            return counts
        for start, indices, lookup in self.rows:  # chunks, not rows
            end = start + len(indices)
            if rows is None:
                picked = indices
            elif rows.dtype == bool:
                picked = indices[rows[start:end]]
            else:
                picked = indices[rows[np.searchsorted(rows, start) : np.searchsorted(rows, end)] - start]
            np.add.at(counts, lookup, np.bincount(picked, minlength=len(lookup)))
        return counts

    def _table(self, figure: str) -> np.ndarray:
        """tallies[figure], widened to every channel seen so far."""
        table = self.tallies.get(figure, np.zeros((len(self.files), 0), dtype=np.int64))
        if table.shape[1] < len(self.channels):
            table = np.pad(table, ((0, 0), (0, len(self.channels) - table.shape[1])))
        self.tallies[figure] = table
        return table

    def count_file(self, cols: dict[str, pa.ChunkedArray], bad: np.ndarray, absent: list[str]) -> None:
        """The current file's null shares of the optional columns, its timestamps before the floor or after the
        run, unknown event types and items without a category (rows about to be dropped, ``bad``, left out of
        the last two). cols: the canonical columns of the file; absent: the optional ones it lacks."""
        self.absent[self.file] = list(absent)
        null = {}
        for name in ("item_id", "category", "channel"):
            null[name] = _null_mask(cols[name])
        for name in ("amount", "quantity"):
            nan = np.concatenate([np.isnan(c.to_numpy(zero_copy_only=False)) for c in cols[name].chunks] or
                                 [np.zeros(0, bool)])
            null[name] = nan if nan.any() else None
        for name, mask in null.items():
            self.count(f"null_{name}", mask)
        ts = cols["ts"]
        low, high = (v.as_py() for v in pc.min_max(ts).values())
        if low is not None and low < self.floor:
            self.count("ts_before_floor", _numpy(pc.fill_null(pc.less(ts, self.floor), False)))
        if high is not None and high > self.run_at:
            self.count("ts_in_future", _numpy(pc.fill_null(pc.greater(ts, self.run_at), False)))
        self._count_types(cols["event_type"], bad)
        no_item = null["item_id"]
        if cols["item_id"].null_count < len(bad) and cols["category"].null_count:
            has_item = ~bad if no_item is None else ~(bad | no_item)
            self.count("item_without_category", has_item & null["category"])

    def _count_types(self, event_type: pa.ChunkedArray, bad: np.ndarray) -> None:
        unknown = rows_where(event_type, lambda words: pc.invert(pc.is_in(words, value_set=self.known)))
        if unknown is None:
            return
        unknown &= ~bad
        self.count("unknown_event_type", unknown)
        codes = DictionaryCodes.of(event_type.filter(pa.array(unknown)))
        counts = codes.counts()[:-1]
        found = self.unknown_types[self.file]
        for name, n in zip(codes.tokens.to_pylist(), counts.tolist(), strict=True):  # distinct types, not rows
            if n:
                found[name] = found.get(name, 0) + n

    def end(self, customer_id: pa.ChunkedArray) -> None:
        """The current file's kept rows: where the next file starts in the log, and (with several files) its
        customers and their events, duplicates counted."""
        self.starts[self.file + 1] = self.starts[self.file] + len(customer_id)
        self.rows = 0  # it holds views of the channel column: the store frees that column once encoded
        if len(self.files) == 1:
            return
        codes = DictionaryCodes.of(customer_id)
        counts = codes.counts()[:-1]
        present = counts > 0
        self.customers[self.file] = (codes.tokens.filter(pa.array(present)), counts[present])

    # -- packing: the whole log in (customer, time) order --------------------------------------------------
    def sorted_order(self, order: np.ndarray, offsets: np.ndarray) -> None:
        """Find the out-of-order events. order: int [n] the log row of each event in (customer, time) order;
        offsets: int64 [n_customers + 1] into it. An event is out of order when its file holds it after the
        customer's next event in time: the file put that pair in reverse order (a late-arriving event)."""
        if len(self.files) > 1:  # each file's events apart, still in (customer, time) order
            owner = np.repeat(np.arange(len(offsets) - 1, dtype=np.int32), np.diff(offsets))
            regroup = np.argsort(self._file_of(order).astype(np.int16 if len(self.files) < 2**15 else np.int32),
                                 kind="stable")
            rows, owner = order[regroup], owner[regroup]
            late = np.flatnonzero((rows[1:] < rows[:-1]) & (owner[1:] == owner[:-1]))
            self.late = (regroup[late], rows[late])
        else:
            late = order[1:] < order[:-1]
            late[offsets[1:-1] - 1] = False  # pairs of two customers
            late = np.flatnonzero(late)
            self.late = (late, order[late])

    def packed_events(self, channel: np.ndarray, vocab: list[str], duplicates: np.ndarray | None,
                      order: np.ndarray | None) -> None:
        """Count the out-of-order events and the duplicates by file and channel. channel: int [n] the channel id
        of each event in (customer, time) order (vocab: their names); duplicates: bool [n] or None; order:
        the log row of each event (sorted_order's), needed with several files only."""
        at, rows = self.late
        self._add_events("out_of_order", rows, channel[at], vocab)
        if duplicates is not None:
            at = np.flatnonzero(duplicates)
            self._add_events("duplicates", np.zeros(len(at), np.int64) if order is None else order[at],
                             channel[at], vocab)

    def _file_of(self, rows: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.starts, rows, side="right") - 1

    def _add_events(self, figure: str, rows: np.ndarray, channel: np.ndarray, vocab: list[str]) -> None:
        """Count events by their log row (int [m]) and store channel id (int [m], names in vocab)."""
        ids, at = np.unique(channel, return_inverse=True)  # m is small: the flagged events only
        to_channel = np.array([self._channel(vocab[i]) for i in ids], dtype=np.int64)
        table = self._table(figure)
        key = self._file_of(rows) * table.shape[1] + to_channel[at]
        table += np.bincount(key, minlength=table.size).reshape(table.shape)

    def packed(self, store) -> None:
        """The log's customers and events per customer, after duplicates are removed, and each channel's
        (customers with an event in it) when customers x channels is at most MAX_CUSTOMER_CELLS."""
        lengths = store.lengths()
        self.events_per_customer = distribution(lengths[lengths > 0])
        vocab = store.vocabs["channel"]
        width = len(vocab)
        if store.n_customers * width > MAX_CUSTOMER_CELLS or len(self.channels) == 1:
            return
        key = np.repeat(np.arange(store.n_customers, dtype=np.int64) * width, lengths)
        key += store.columns["channel"]
        per = np.bincount(key, minlength=store.n_customers * width).reshape(store.n_customers, width)
        for j, name in enumerate(vocab):
            events = per[:, j]
            if events.any():
                self.channel_customers[self._channel(name)] = distribution(events[events > 0])

    # -- the report ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """data_quality.json: the figures of the whole log (``total``), of each file and of each channel."""
        tallies = {name: self._table(name) for name in list(self.tallies)}
        one_file = len(self.files) == 1
        files = []
        for f, path in enumerate(self.files):
            entry = {"file": path, "source": self.sources[f], **_figures({k: int(v[f].sum()) for k, v in tallies.items()}),
                     "absent_columns": self.absent[f], "unknown_types": _top(self.unknown_types[f])}
            entry["events_per_customer"] = (self.events_per_customer if one_file else
                                            distribution(self.customers[f][1]) if self.customers[f] else {})
            files.append(entry)
        counted = np.flatnonzero(sum(v.sum(axis=0) for v in tallies.values()))  # the store's <unk> may count none
        by_rows = counted[np.argsort(-tallies["rows_read"].sum(axis=0)[counted], kind="stable")]
        channels = []
        for c in by_rows[:MAX_CHANNELS]:
            entry = {"channel": self.channels[c], **_figures({k: int(v[:, c].sum()) for k, v in tallies.items()})}
            entry["events_per_customer"] = (self.events_per_customer if len(self.channels) == 1 else
                                            self.channel_customers.get(int(c), {}))
            channels.append(entry)
        rest = by_rows[MAX_CHANNELS:]
        if len(rest):
            channels.append({"channel": f"<{len(rest)} other channels>",
                             **_figures({k: int(v[:, rest].sum()) for k, v in tallies.items()})})
        unknown: dict[str, int] = {}
        for found in self.unknown_types:
            for name, n in found.items():
                unknown[name] = unknown.get(name, 0) + n
        total = {**_figures({k: int(v.sum()) for k, v in tallies.items()}), "unknown_types": _top(unknown),
                 "events_per_customer": self.events_per_customer}
        return {"run_at": utc(self.run_at), "ts_floor": utc(self.floor), "known_event_types": self.known.to_pylist(),
                "total": total, "files": files, "channels": channels, "overlap": self._overlap(),
                "sources": self._sources(tallies)}

    def _sources(self, tallies: dict[str, np.ndarray]) -> list[dict]:
        """Each source's figures (its files' summed), its customers and events per customer, and the customers
        it shares with each other source; [] for a log of one source."""
        names = list(dict.fromkeys(self.sources))
        if len(names) < 2:
            return []
        of = np.array([names.index(name) for name in self.sources])
        counted = all(c is not None for c in self.customers)
        customers = []
        for i in range(len(names)):
            parts = [self.customers[f] for f in np.flatnonzero(of == i)] if counted else []
            if parts:
                table = pa.table({"id": pa.concat_arrays([p[0].cast(pa.string()) for p in parts]),
                                  "n": np.concatenate([p[1] for p in parts])}).group_by("id").aggregate([("n", "sum")])
                customers.append((table["id"].combine_chunks(), table["n_sum"].to_numpy()))
            else:
                customers.append(None)
        out = []
        for i, name in enumerate(names):
            files = np.flatnonzero(of == i)
            entry = {"source": name, "files": [self.files[f] for f in files],
                     **_figures({k: int(v[files].sum()) for k, v in tallies.items()})}
            entry["events_per_customer"] = distribution(customers[i][1]) if customers[i] else {}
            entry["shared_customers"] = {
                other: int(pc.sum(pc.is_in(customers[i][0], value_set=customers[j][0])).as_py() or 0)
                for j, other in enumerate(names) if j != i and customers[i] and customers[j]}
            out.append(entry)
        return out

    def _overlap(self) -> dict | None:
        """With several files: the customers found in more than one, and (up to MAX_PAIRED_FILES files) the
        customers of each pair of files."""
        if len(self.files) < 2 or any(c is None for c in self.customers):
            return None
        ids = [c[0] for c in self.customers]
        seen = pc.value_counts(pa.chunked_array(ids, pa.string())).field("counts").to_numpy()
        pairs = []
        if len(ids) <= MAX_PAIRED_FILES:
            for a in range(len(ids)):  # pairs of files, not customers
                for b in range(a + 1, len(ids)):
                    shared = int(pc.sum(pc.is_in(ids[a], value_set=ids[b])).as_py() or 0)
                    pairs.append({"files": [self.files[a], self.files[b]], "customers": shared})
        return {"customers": len(seen), "in_several_files": int((seen > 1).sum()), "pairs": pairs}


def summary(quality: dict) -> str:
    """One line of the whole log's figures, for the run's log."""
    t = quality["total"]
    share = lambda n: f"{n:,} ({n / max(t['rows_read'], 1):.2%})"  # noqa: E731
    return (f"{t['rows_read']:,} rows from {len(quality['files'])} file(s): {share(t['rows_dropped'])} dropped, "
            f"{share(t['duplicates'])} duplicates, {share(t['out_of_order'])} out of order, {share(t['ts_in_future'])} "
            f"after the run, {share(t['unknown_event_type'])} of unknown event types, "
            f"{share(t['item_without_category'])} items without a category; "
            f"{t['events_per_customer'].get('customers', 0):,} customers")


def _figures(counts: dict[str, int]) -> dict:
    """The figures of one group of rows (a file, a channel, the log) from its tallies."""
    rows = counts.get("rows_read", 0)
    dropped = {reason: counts.get(f"dropped_{reason}", 0) for reason in DROPPED}
    n_dropped = sum(dropped.values())
    events = {name: counts.get(name, 0) for name in EVENTS}
    nulls = {name: counts.get(f"null_{name}", 0) for name in COLUMNS}
    return {"rows_read": rows, "rows_dropped": n_dropped, "dropped": dropped,
            "rows_kept": rows - n_dropped - events["duplicates"], "nulls": nulls,
            "null_share": {name: round(n / max(rows, 1), 6) for name, n in nulls.items()}, **events}


def _top(types: dict[str, int]) -> dict[str, int]:
    return dict(sorted(types.items(), key=lambda kv: (-kv[1], kv[0]))[:SHOW_TYPES])


def _numpy(mask: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return mask.to_numpy(zero_copy_only=False) if len(mask) else np.zeros(0, dtype=bool)


def _null_mask(column: pa.ChunkedArray) -> np.ndarray | None:
    """bool [n]: the null rows of a column; None where none is."""
    return _numpy(pc.is_null(column)) if column.null_count else None
