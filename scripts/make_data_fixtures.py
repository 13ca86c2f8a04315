#!/usr/bin/env python3
"""Writes the `.npz` data sets of tests/train_data.rs (`snnc train --data
FILE.npz`) with NumPy, into tests/fixtures/data/.

    python3 -m venv /tmp/npd && /tmp/npd/bin/pip install numpy
    /tmp/npd/bin/python scripts/make_data_fixtures.py

Each set is small (a few KB) and learnable (the class shows in the
inputs), so a few epochs of a tiny network beat chance.
"""

import pathlib

import numpy as np

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "data"
EVENT = np.dtype([("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])


def static_images(rng, n):
    """n uint8 2x3x3 images of 3 classes: class c is bright in row c of both channels."""
    y = np.arange(n) % 3
    x = rng.integers(0, 60, size=(n, 2, 3, 3))
    for i, c in enumerate(y):
        x[i, :, c, :] += 180
    return x.astype(np.uint8), y.astype(np.int64)


def sequences(rng, n, steps=4):
    """n float32 sequences [steps, 3] of 2 classes: class c drives input c early, the other late."""
    y = np.arange(n) % 2
    x = rng.normal(0.0, 0.1, size=(n, steps, 3))
    for i, c in enumerate(y):
        x[i, : steps // 2, c] += 2.0
        x[i, steps // 2 :, 1 - c] += 2.0
    return x.astype(np.float32), y.astype(np.int64)


def recording(rng, label, events=30):
    """Events on a 4x4 sensor with 2 polarities: class 0 fires in the left half with p = 0, class 1 in the right with p = 1."""
    ev = np.zeros(events, dtype=EVENT)
    ev["t"] = np.sort(rng.integers(0, 1000, size=events))
    ev["x"] = rng.integers(0, 2, size=events) + 2 * label
    ev["y"] = rng.integers(0, 4, size=events)
    ev["p"] = label
    return ev


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(19)
    # One set (x, y) of static uint8 images: train with --test-split.
    x, y = static_images(rng, 40)
    np.savez(OUT / "static_u8.npz", x=x, y=y)
    # Two splits of float32 sequences [N, T=4, 3].
    xa, ya = sequences(rng, 24)
    xb, yb = sequences(rng, 8)
    np.savez(OUT / "sequences.npz", x_train=xa, y_train=ya, x_test=xb, y_test=yb)
    # Event recordings as Tonic gives them (N-MNIST layout, 4x4 sensor).
    arrays = {"sensor_size": np.array([4, 4, 2], dtype=np.int64)}
    for split, n in (("train", 16), ("test", 4)):
        labels = np.arange(n) % 2
        for i, c in enumerate(labels):
            arrays[f"x_{split}_{i}"] = recording(rng, c)
        arrays[f"y_{split}"] = labels.astype(np.int64)
    np.savez_compressed(OUT / "events.npz", **arrays)

    # Bad files.
    x, y = static_images(rng, 12)
    np.savez(OUT / "bad_missing.npz", x_train=x, y_train=y, x_test=x)
    y_bad = y.copy()
    y_bad[7] = 5
    np.savez(OUT / "bad_labels.npz", x=x, y=y_bad)
    xf = x.astype(np.float32) / 255
    xf[3, 1, 2, 0] = np.nan
    np.savez(OUT / "bad_nan.npz", x=xf, y=y)
    np.savez(OUT / "bad_shape.npz", x=x.reshape(12, 18)[:, :5], y=y)
    np.savez(OUT / "float_targets.npz", x=x, y=y.astype(np.float32))
    # Regression (--loss mse): float32 sequences [N, T=4, 3] and float
    # targets [N, 2], the mean of inputs 0 and 1 over the steps.
    rng = np.random.default_rng(20)
    x = rng.normal(0.0, 1.0, size=(48, 4, 3)).astype(np.float32)
    y = x[:, :, :2].mean(axis=1).astype(np.float32)
    np.savez(OUT / "regression.npz", x_train=x[:40], y_train=y[:40], x_test=x[40:], y_test=y[40:])

    # Spike sequences for the 12-input, 7-class braille NIR files
    # (tests/nir_import.rs: `snnc train FILE.nir` starts from the file's
    # weights); random, only the shapes matter.
    rng = np.random.default_rng(7)

    def braille(n):
        x = (rng.random((n, 100, 12)) < 0.1).astype(np.float32)
        return x, rng.integers(0, 7, size=n).astype(np.int64)

    (xa, ya), (xb, yb) = braille(8), braille(4)
    np.savez_compressed(OUT / "braille_like.npz", x_train=xa, y_train=ya, x_test=xb, y_test=yb)


if __name__ == "__main__":
    main()
