#!/usr/bin/env python3
"""Writes the NumPy fixtures of runtime/src/npy/tests.rs with NumPy itself
(not snnc), to prove that snnc reads what NumPy writes.

    python3 -m venv /tmp/npv && /tmp/npv/bin/pip install numpy
    /tmp/npv/bin/python scripts/make_npy_fixtures.py

Every value is small and exact in the dtype, so the tests compare exactly.
"""

import pathlib

import numpy as np

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "npy"


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    base = np.arange(6).reshape(2, 3) - 2  # [[-2, -1, 0], [1, 2, 3]]
    for dtype in ["<f2", "<f4", "<f8", ">f8", "|i1", "<i2", "<i4", "<i8", ">i4", "<u2", "<u4", "<u8"]:
        name = dtype.replace("<", "le_").replace(">", "be_").replace("|", "")
        values = base if dtype[1] != "u" else base + 2
        np.save(OUT / f"{name}.npy", (values / (4 if dtype[1] == "f" else 1)).astype(dtype))
    np.save(OUT / "u1.npy", np.array([[0, 128, 255]], dtype=np.uint8))
    np.save(OUT / "b1.npy", np.array([True, False, True]))
    # Fortran order: stored column by column, read back in C order.
    np.save(OUT / "fortran.npy", np.asfortranarray(np.arange(24, dtype="<f4").reshape(2, 3, 4)))
    np.save(OUT / "scalar.npy", np.array(3.5, dtype="<f8"))
    np.save(OUT / "empty.npy", np.zeros((0, 3), dtype="<f4"))
    # Events as Tonic writes them.
    events = np.zeros(3, dtype=np.dtype([("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")]))
    events["x"] = [1, 2, 3]
    events["y"] = [4, 5, 6]
    events["t"] = [100, 250, 1000]
    events["p"] = [1, 0, 1]
    np.save(OUT / "events.npy", events)
    # An aligned record: NumPy writes the padding as ('', '|V3').
    padded = np.zeros(2, dtype=np.dtype([("a", "u1"), ("b", "<f4")], align=True))
    padded["a"] = [7, 8]
    padded["b"] = [0.5, -1.5]
    np.save(OUT / "padded.npy", padded)
    np.save(OUT / "object.npy", np.array([1, "a"], dtype=object), allow_pickle=True)
    np.savez(OUT / "stored.npz", x=np.arange(6, dtype="<f4").reshape(2, 3), y=np.array([1, 2], dtype="<i8"))
    # An input of examples/lif.ron for tests/npy_cli.rs: [T=100, B=1, 5]
    # constant currents 0, 0.5, ..., 2 (the example's neurons at rest and
    # firing at four rates).
    currents = np.broadcast_to(np.linspace(0, 2, 5, dtype="<f4"), (100, 1, 5))
    np.save(OUT / "lif_input.npy", np.ascontiguousarray(currents))
    np.savez_compressed(OUT / "compressed.npz", x=np.arange(6, dtype="<f4").reshape(2, 3), events=events)


if __name__ == "__main__":
    main()
