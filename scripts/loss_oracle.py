#!/usr/bin/env python3
"""Writes tests/fixtures/losses.json: the value and gradient of each loss of
`snnc train --loss` as torch (and snnTorch) compute them on CPU, on small
fixed cases, for the unit tests in runtime/src/loss.rs.

    python -m pip install --no-deps --target /tmp/snnt snntorch   # once
    PYTHONPATH=/tmp/snnt /work/norse-venv/bin/python scripts/loss_oracle.py

snnTorch's losses are called as they are (`SF.ce_count_loss()`,
`SF.mse_count_loss(correct_rate, incorrect_rate)`, on spikes `[T, B, C]`);
without snnTorch the script stops (it does not reproduce them).

Each case: `loss` (nll, ce-count, mse-count, mse), `dtype`, `input` (the
tensor the loss reads: log-probabilities `[B, C]`, spikes `[T, B, C]`, or a
readout `[B, K]`), `labels` or `targets` (`[B, K]` floats), the rates of
mse-count, `value` (the loss) and `grad`: the gradient of the loss with
respect to the log-probabilities (nll), the spike counts `[B, C]` (count
losses: `spikes.sum(0)`, the gradient of every time step is this one), or
the readout (mse).
"""

import json
import os
import sys

import torch
import torch.nn.functional as F

try:
    import snntorch
    import snntorch.functional as SF
except ImportError:
    sys.exit("snnTorch is needed: python -m pip install --no-deps --target /tmp/snnt snntorch; PYTHONPATH=/tmp/snnt")

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "losses.json")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def tensor_json(t):
    return {"shape": list(t.shape), "data": t.detach().reshape(-1).tolist()}


def spikes(steps, batch, classes, seed):
    """0/1 spikes with a silent sample (all counts 0, a tie) and a tie of
    two nonzero counts."""
    g = torch.Generator().manual_seed(seed)
    s = (torch.rand(steps, batch, classes, generator=g) < 0.4).double()
    s[:, 0, :] = 0.0  # sample 0 never spikes
    if batch > 1 and classes > 2:
        s[:, 1, :] = 0.0
        s[:2, 1, 0] = 1.0
        s[1:3, 1, 2] = 1.0  # counts 2, 0, 2: a tie on the first maximum
    return s


def labels_of(batch, classes):
    return [(3 * b + 1) % classes for b in range(batch)]


def nll_case(batch, classes, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, classes, generator=g, dtype=torch.float64).to(DTYPES[dtype])
    lp = torch.log_softmax(x, 1).detach().requires_grad_()
    y = torch.tensor(labels_of(batch, classes))
    loss = F.nll_loss(lp, y)
    loss.backward()
    return {"loss": "nll", "dtype": dtype, "input": tensor_json(lp), "labels": y.tolist(),
            "value": loss.item(), "grad": tensor_json(lp.grad)}


def count_case(loss_name, steps, batch, classes, dtype, seed, rates=None):
    spk = spikes(steps, batch, classes, seed).to(DTYPES[dtype]).requires_grad_()
    y = torch.tensor(labels_of(batch, classes))
    if loss_name == "ce-count":
        fn = SF.ce_count_loss()
    else:
        fn = SF.mse_count_loss(correct_rate=rates[0], incorrect_rate=rates[1])
    loss = fn(spk, y)
    loss.backward()
    grad = spk.grad
    # The gradient of the counts reaches every step unchanged.
    assert all(torch.equal(grad[t], grad[0]) for t in range(steps))
    case = {"loss": loss_name, "dtype": dtype, "steps": steps, "input": tensor_json(spk), "labels": y.tolist(),
            "value": loss.item(), "grad": tensor_json(grad[0])}
    if rates is not None:
        case["correct_rate"], case["incorrect_rate"] = rates
    return case


def mse_case(batch, k, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(batch, k, generator=g, dtype=torch.float64).to(DTYPES[dtype]).requires_grad_()
    # Float targets come from a data file: float32.
    target = torch.randn(batch, k, generator=g, dtype=torch.float64).to(torch.float32)
    loss = F.mse_loss(pred, target.to(pred.dtype))
    loss.backward()
    return {"loss": "mse", "dtype": dtype, "input": tensor_json(pred), "targets": tensor_json(target),
            "value": loss.item(), "grad": tensor_json(pred.grad)}


def main():
    cases = []
    seed = 0
    for dtype in DTYPES:
        for batch, classes in [(1, 2), (3, 4), (5, 10), (40, 10)]:
            seed += 1
            cases.append(nll_case(batch, classes, dtype, seed))
        for steps, batch, classes in [(5, 1, 3), (8, 3, 4), (25, 6, 10), (7, 20, 10)]:
            seed += 1
            cases.append(count_case("ce-count", steps, batch, classes, dtype, seed))
            for rates in [(1.0, 0.0), (0.8, 0.2), (0.75, 0.25)]:
                cases.append(count_case("mse-count", steps, batch, classes, dtype, seed, rates))
        for batch, k in [(1, 1), (4, 3), (32, 10)]:
            seed += 1
            cases.append(mse_case(batch, k, dtype, seed))
    doc = {"source": f"torch {torch.__version__}, snnTorch {snntorch.__version__}, CPU; scripts/loss_oracle.py",
           "cases": cases}
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {len(cases)} cases to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
