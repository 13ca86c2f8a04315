#!/usr/bin/env python3
"""The golden frames of snnc's event binning: hand-made recordings binned
by Tonic's own `tonic.transforms.ToFrame(sensor_size, n_time_bins=T)`,
written to tests/fixtures/data/tonic_frames.npz for tests/train_data.rs to
compare bit for bit.

    python3 -m venv /tmp/npd && /tmp/npd/bin/pip install numpy typing_extensions
    /tmp/npd/bin/pip install --no-deps tonic      # 1.7.0 gave the committed file
    /tmp/npd/bin/python scripts/tonic_frames_oracle.py

Only `tonic.transforms` is imported (the `tonic` package's __init__ imports
its datasets, whose dependencies ToFrame does not need).

Keys, for case k: `events_k` (the recording, a structured array),
`sensor_k` ([W, H, P]), `bins_k` (T) and `frames_k` (Tonic's frames
[T, P, H, W] as float32; Tonic counts in int16).
"""

import importlib.util
import pathlib
import sys
import types

import numpy as np

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "data" / "tonic_frames.npz"
EVENT = np.dtype([("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])
# N-MNIST's field order and widths in Tonic.
NMNIST = np.dtype([("x", "<i2"), ("y", "<i2"), ("p", "<i2"), ("t", "<i8")])


def to_frame():
    spec = importlib.util.find_spec("tonic")
    pkg = types.ModuleType("tonic")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["tonic"] = pkg
    from tonic.transforms import ToFrame

    return ToFrame


def events(rows, dtype=EVENT):
    """Rows of (x, y, t, p)."""
    ev = np.zeros(len(rows), dtype=dtype)
    for name, column in zip("xytp", np.array(rows, dtype=np.int64).T.reshape(4, -1)):
        ev[name] = column
    return ev


def main():
    ToFrame = to_frame()
    rng = np.random.default_rng(7)
    n = 300
    big = np.zeros(n, dtype=NMNIST)
    big["t"] = np.sort(rng.integers(1000, 50000, size=n))
    big["x"] = rng.integers(0, 5, size=n)
    big["y"] = rng.integers(0, 3, size=n)
    big["p"] = rng.integers(0, 2, size=n)
    cases = [
        # Ties at the bin edges t = 3, 6, 9 (w = 10 // 3 = 3); 9 and 10 fall after T·w.
        (events([(0, 0, 0, 0), (1, 0, 3, 0), (1, 1, 3, 1), (0, 1, 6, 1), (1, 1, 9, 0), (0, 0, 10, 1)]), (2, 2, 2), 3),
        # T divides the duration: the last event is in no frame.
        (events([(0, 0, 5, 0), (1, 0, 6, 0), (2, 0, 7, 0)]), (3, 1, 1), 2),
        # A single event (w = 0): empty frames.
        (events([(1, 1, 42, 0)]), (2, 2, 1), 4),
        # Shorter than T time units: empty frames.
        (events([(0, 0, 0, 1), (1, 0, 2, 1)]), (2, 1, 2), 3),
        # One polarity whose value is 1 (Tonic sets it to 0).
        (events([(0, 0, 0, 1), (1, 0, 5, 1), (1, 0, 9, 1), (0, 0, 20, 1)]), (2, 1, 1), 2),
        # Polarity -1 counts from the end, as numpy indexes; a non-square sensor.
        (events([(2, 0, 0, -1), (0, 1, 4, 0), (1, 1, 8, 1), (2, 1, 12, -1), (0, 0, 13, 0)]), (3, 2, 2), 3),
        # Many events in N-MNIST's dtype; repeated pixels add up.
        (big, (5, 3, 2), 7),
        # One bin holding everything but the last event.
        (big, (5, 3, 2), 1),
    ]
    arrays = {}
    for k, (ev, sensor, bins) in enumerate(cases):
        frames = ToFrame(sensor_size=sensor, n_time_bins=bins)(ev.copy())
        assert frames.shape == (bins, sensor[2], sensor[1], sensor[0]), frames.shape
        arrays[f"events_{k}"] = ev
        arrays[f"sensor_{k}"] = np.array(sensor, dtype=np.int64)
        arrays[f"bins_{k}"] = np.array(bins, dtype=np.int64)
        arrays[f"frames_{k}"] = frames.astype(np.float32)
        print(k, sensor, bins, "events", len(ev), "counted", int(frames.sum()))
    np.savez_compressed(OUT, **arrays)


if __name__ == "__main__":
    main()
