"""The producers' golden numbers for snnc's NIR import (tests/nir_golden.rs).

Reads some of the real files of tests/nir/ with the producers' own packages,
feeds each a fixed, seeded input and writes, per step, the producer's output
(and the hidden spikes where the modules are reachable) into
tests/fixtures/nir_golden.json, input included. Run once, offline:

    /work/norse-venv/bin/python scripts/nir_golden.py

(norse 1.1.0, snntorch 1.0.0, nir 1.0.8, nirtorch 2.6, torch; every number
is float32, as the producers compute.)

Cases (`producer` is whose package computed the numbers, `convention` the
`--nir-from` that claims to reproduce them):

* Norse, `norse.torch.from_nir(graph, dt=1e-3)` as it is:
  - NIR_lif_norse.nir (Affine 1->1, LIF: LIFBoxCell);
  - nirrs_neurocuda_mlp_mnist.nir (3 Affine, 2 IF: IAFCell, v += x);
  Norse reads these nodes exactly as snnc's `norse` convention does.
  nirrs_swavelet-1.0.0.nir is left out: nirtorch.load warns "Multiple input
  nodes found. Using the first node as the input." and never calls its LIF.
  Known quirk, not a golden: Norse's from_nir reads a CubaLIF as an LIBox
  synapse followed by an LIFBox neuron (`CubaLIF` in norse/torch/utils/
  import_nir.py), not as Norse's own `LIFCell` that Norse exports as
  CubaLIF; snnc's `norse` convention reads CubaLIF as `LIFCell`, the cell
  that wrote the file. The braille files are therefore not run with Norse.
  nirrs_ifsynfire-0.1.0.nir (an IF reading its own output through
  `recurrent_synapses`) is not recorded yet: how nirtorch.load's
  GraphExecutor orders the recurrent edge was not checked.

* snnTorch, the modules `snntorch.import_nir` builds
  (`_replace_rnn_subgraph_with_nirgraph`, then `_nir_to_snntorch_module`
  per node), chained in the graph's order and stepped here:
  - NIR_braille_noDelay_noBias_subtract.nir and NIR_braille_noDelay_bias_zero.nir
    (Linear/Affine 12->40/38, RSynaptic (CubaLIF + recurrent w_rec), 40->7,
    Synaptic);
  - spyx_braille_noDelay_noBias_subtract_subgraph.nir (the same graph with the
    recurrence as a nested NIRGraph, fixed by Spyx).
  `snntorch.import_nir.import_from_nir` itself fails on every braille file:
  it wraps the recurrence into a NIRGraph node that its node_map has no
  entry for, and nirtorch 2.6's `nir_to_torch` then recurses into it and
  fails (`'GraphModule' object has no attribute 'items'`), so the script
  builds the same modules with snnTorch's own per-node function.
  NIR_two_lif_neurons.nir fails in snnTorch (`v_leak not supported`),
  nirrs_swavelet-1.0.0.nir too (no LI in snnTorch's node_map),
  NIR_lif_rockpool.nir fails in nir.read itself (shape mismatch).
  Known quirks: snnTorch's importer builds its neurons with
  `reset_mechanism="zero"` and `reset_delay=False`, whatever the trained
  model used (the file does not say); snnTorch's own defaults, with which
  the braille models were trained (`..._subtract`), are reset by
  subtraction applied one step late (`reset_delay=True`), which is what
  snnc's `snntorch` convention reproduces. Each snnTorch case is therefore
  recorded twice: `snntorch-defaults` (the importer's modules with
  `reset_mechanism="subtract"`, `reset_delay=True` and the state function
  `_base_sub` that `__init__` picks for them: setting the attribute
  afterwards does not re-pick it, and a first version of this script,
  which only set it, recorded a reset to zero; snnc must agree) and
  `snntorch-importer` (the modules as imported: recorded for the record;
  the golden test checks that they agree with snnc until the first reset
  and says how often they differ after it). `RSynaptic` with
  `reset_delay=False` applies its immediate reset to a local variable
  only (snntorch/_neurons/rsynaptic.py), so its reset is one step late
  anyway; `Synaptic`'s is immediate.
  snnTorch cannot run an IF file: `_nir_to_snntorch_module` reads IF as
  `Leaky(beta=0.9, init_hidden=False)` (a leak an IF does not have), whose
  (spike, membrane) tuple the next Linear of import_from_nir's GraphModule
  cannot take (nirrs_neurocuda_mlp_mnist.nir: `TypeError: linear():
  argument 'input' must be Tensor, not tuple`); the IF/Affine golden is
  Norse's.

The inputs: Bernoulli spikes (torch.Generator seeded per case), [T, B, ...].
"""

import json
import sys
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")

import nir  # noqa: E402
import norse  # noqa: E402
import norse.torch  # noqa: E402
import nirtorch  # noqa: E402
import numpy as np  # noqa: E402
import snntorch  # noqa: E402
import snntorch.import_nir as sti  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NIR_DIR = ROOT / "tests" / "nir"
OUT = ROOT / "tests" / "fixtures" / "nir_golden.json"


def spikes(seed, shape, p):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < p).float()


def flat(t):
    return [float(v) for v in t.detach().to(torch.float32).reshape(-1).tolist()]


def quiet(fn, *a, **k):
    """snnTorch prints warnings on stdout."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*a, **k)


def norse_case(name, file, steps, batch, p, seed, hidden):
    g = nir.read(str(NIR_DIR / file))
    m = norse.torch.from_nir(g, dt=1e-3)
    m.eval()
    shape = [int(d) for d in np.asarray(g.nodes[[k for k, v in g.nodes.items() if isinstance(v, nir.Input)][0]].input_type["input"]).reshape(-1)]
    x = spikes(seed, [steps, batch, *shape], p)
    seen = {}
    for h in hidden:
        getattr(m, h).register_forward_hook(lambda mod, inp, out, h=h: seen.setdefault(h, []).append(out[0].clone()))
    outs, state = [], None
    with torch.no_grad():
        for t in range(steps):
            y, state = m(x[t], state)
            outs.append(y)
    y = torch.stack(outs)
    return {
        "name": name,
        "file": file,
        "producer": "norse",
        "convention": "norse",
        "dt": 1e-3,
        "steps": steps,
        "batch": batch,
        "input_shape": list(x.shape),
        "input": flat(x),
        "output_shape": list(y.shape),
        "output": flat(y),
        "hidden": {h: flat(torch.stack(seen[h])) for h in hidden},
    }


def snntorch_modules(g, defaults):
    """The modules snntorch.import_nir builds, in the order of the chain."""
    g = quiet(sti._replace_rnn_subgraph_with_nirgraph, g)
    order, at = [], [k for k, v in g.nodes.items() if isinstance(v, nir.Input)][0]
    nxt = dict(g.edges)
    while at in nxt:
        at = nxt[at]
        if isinstance(g.nodes[at], nir.Output):
            break
        order.append(at)
    mods = []
    for k in order:
        mod = quiet(sti._nir_to_snntorch_module, g.nodes[k], init_hidden=False)
        if defaults and isinstance(mod, snntorch.SpikingNeuron):
            # Setting `reset_mechanism` after construction updates only
            # `reset_mechanism_val`: Synaptic/RSynaptic pick their state
            # function (`_base_sub`, `_base_zero`, `_base_int`) once, in
            # `__init__`, so the module would go on resetting to zero
            # (one step late). Pick the subtracting one as `__init__`
            # would have for `reset_mechanism="subtract"`.
            mod.reset_mechanism = "subtract"
            mod.state_function = mod._base_sub
            mod.reset_delay = True
        mods.append((k, mod))
    return mods


def snntorch_case(name, file, steps, batch, p, seed, defaults):
    g = nir.read(str(NIR_DIR / file))
    mods = snntorch_modules(g, defaults)
    shape = [int(d) for d in np.asarray(g.nodes["input"].input_type["input"]).reshape(-1)]
    x = spikes(seed, [steps, batch, *shape], p)
    states = {k: None for k, _ in mods}
    outs, hidden, volts = [], {}, {}
    with torch.no_grad():
        for t in range(steps):
            h = x[t]
            for k, mod in mods:
                if isinstance(mod, snntorch.RSynaptic):
                    if states[k] is None:
                        states[k] = (torch.zeros_like(h), torch.zeros_like(h), torch.zeros_like(h))
                    spk, syn, mem = mod(h, *states[k])
                    states[k] = (spk, syn, mem)
                    volts.setdefault(k, []).append(mem.clone())
                    h = spk
                elif isinstance(mod, snntorch.Synaptic):
                    if states[k] is None:
                        states[k] = (torch.zeros_like(h), torch.zeros_like(h))
                    spk, syn, mem = mod(h, *states[k])
                    states[k] = (syn, mem)
                    volts.setdefault(k, []).append(mem.clone())
                    h = spk
                else:
                    h = mod(h)
                if isinstance(mod, snntorch.SpikingNeuron):
                    hidden.setdefault(k, []).append(h.clone())
            outs.append(h)
    y = torch.stack(outs)
    return {
        "name": name,
        "file": file,
        "producer": "snntorch-defaults" if defaults else "snntorch-importer",
        "convention": "snntorch",
        "dt": 1e-4,
        "steps": steps,
        "batch": batch,
        "input_shape": list(x.shape),
        "input": flat(x),
        "output_shape": list(y.shape),
        "output": flat(y),
        "hidden": {k: flat(torch.stack(v)) for k, v in hidden.items()},
        # The membrane after the step (the subtraction of the step's reset
        # included), for snnTorch's defaults only.
        "hidden_v": {k: flat(torch.stack(v)) for k, v in volts.items()} if defaults else {},
    }


def main():
    torch.set_num_threads(1)
    cases = [
        norse_case("lif_norse", "NIR_lif_norse.nir", 40, 3, 0.5, 1, ["1"]),
        norse_case("neurocuda_mlp_norse", "nirrs_neurocuda_mlp_mnist.nir", 12, 2, 0.2, 2, ["if1", "if2"]),
    ]
    for i, (file, short) in enumerate(
        [
            ("NIR_braille_noDelay_noBias_subtract.nir", "braille_subtract"),
            ("NIR_braille_noDelay_bias_zero.nir", "braille_zero"),
            ("spyx_braille_noDelay_noBias_subtract_subgraph.nir", "spyx_braille_subtract"),
        ]
    ):
        for defaults in (True, False):
            tag = "defaults" if defaults else "importer"
            cases.append(snntorch_case(f"{short}_snntorch_{tag}", file, 60, 2, 0.3, 10 + i, defaults))
    doc = {
        "generator": "scripts/nir_golden.py",
        "versions": {
            "norse": norse.__version__ if hasattr(norse, "__version__") else "1.1.0",
            "snntorch": snntorch.__version__,
            "nir": nir.__version__ if hasattr(nir, "__version__") else "1.0.8",
            "nirtorch": getattr(nirtorch, "__version__", "?"),
            "torch": torch.__version__,
        },
        "cases": cases,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    for c in cases:
        spk = {k: sum(v) for k, v in c["hidden"].items()}
        print(c["name"], c["output_shape"], "output sum", round(sum(c["output"]), 4), "hidden spikes", spk, file=sys.stderr)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
