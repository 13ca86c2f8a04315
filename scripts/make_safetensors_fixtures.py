#!/usr/bin/env python3
"""Writes the safetensors fixtures of tests/safetensors_cli.rs with the Python
`safetensors` library (not snnc), to prove that snnc reads what it writes.

The network is tests/nets/lif_recurrent.ron (`snnc weights` lists its
parameters): `rec.input_weights` [3, 4] and `rec.recurrent_weights` [3, 3],
PyTorch layouts ([out, in]); the constant `rec.autapse_mask` is left out, as
a Norse `state_dict()` may. Every value is a multiple of 1/8 or 1/4, exact in
f16, so the F32 and F16 files hold the same weights and give the same run.

    python3 -m venv /tmp/st && /tmp/st/bin/pip install safetensors numpy
    /tmp/st/bin/python scripts/make_safetensors_fixtures.py

`safetensors.numpy.save_file` writes the same bytes as
`safetensors.torch.save_file` for the same arrays; the metadata
`{"format": "pt"}` is what the torch writer adds.
"""

import pathlib

import numpy as np
from safetensors.numpy import save_file

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "weights"


def weights(dtype):
    input_weights = (np.arange(12, dtype=np.float64).reshape(3, 4) - 5.0) / 8.0 + 0.5
    recurrent_weights = ((np.arange(9, dtype=np.float64).reshape(3, 3) % 5) - 2.0) / 4.0
    return {
        "rec.input_weights": input_weights.astype(dtype),
        "rec.recurrent_weights": recurrent_weights.astype(dtype),
    }


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    save_file(weights(np.float32), str(OUT / "lif_recurrent_f32.safetensors"), metadata={"format": "pt"})
    save_file(weights(np.float16), str(OUT / "lif_recurrent_f16.safetensors"), metadata={"format": "pt"})
    for f in sorted(OUT.glob("*.safetensors")):
        print(f"wrote {f.relative_to(OUT.parent.parent.parent)} ({f.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
