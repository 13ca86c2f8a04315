"""Writes oracle cases (schema `snnc-norse-oracle/1`, tests/golden/README.md)
for Norse's recurrent zoo cells: IzhikevichRecurrentCell, LIFExRecurrentCell,
LIFRefracRecurrentCell, and the functional iaf_step, with given weights, each
in float32 and float64.

    python scripts/norse/recurrent_zoo_oracle.py tests/golden

Needs norse 1.1.0 and torch (scripts/norse/setup-norse.sh makes a venv).
A float32 case is kept only when no threshold comparison comes within 2e-4
of the threshold (so rounding cannot flip a spike); the seed is searched.
"""

import json
import platform
import sys

import numpy as np
import torch
import norse
import norse.torch as nt
from norse.torch.functional.iaf import IAFParameters, IAFState, iaf_step
from norse.torch.functional.lif import LIFParameters
from norse.torch.functional.lif_ex import LIFExParameters
from norse.torch.functional.lif_refrac import LIFRefracParameters

T, B, N_IN, H = 30, 2, 4, 5
MARGIN = 2e-4


def tensor(x, dtype):
    a = np.asarray(x.detach().cpu().numpy(), dtype=np.float64 if dtype == "float64" else np.float32)
    return {"shape": list(a.shape), "dtype": dtype, "data": [float(v) for v in a.reshape(-1)]}


def run(kind, seed, dtype):
    tdt = torch.float64 if dtype == "float64" else torch.float32
    rng = np.random.default_rng(seed)
    scale = {"izhikevich": 40.0, "iaf": 1.0, "lif_ex": 3.0, "lif_refrac": 4.0}[kind]
    x = torch.tensor((rng.random((T, B, N_IN)) < 0.4).astype(np.float64), dtype=tdt)
    w_in = torch.tensor(rng.normal(0.6, 0.5, (H, N_IN)) * scale, dtype=tdt)
    w_rec = torch.tensor(rng.normal(0.0, 0.5, (H, H)) * scale, dtype=tdt)
    w_rec_given = w_rec.clone()
    margins = []
    dt = 0.001
    params = {"dt": dt, "autapses": kind == "iaf", "method": "super", "alpha": 100.0}
    traces = {}

    def keep(name, value):
        traces.setdefault(name, []).append(value.detach().clone())

    if kind == "iaf":
        p = IAFParameters(v_th=torch.as_tensor(0.8, dtype=tdt), v_reset=torch.as_tensor(-0.2, dtype=tdt))
        params.update({"v_th": 0.8, "v_reset": -0.2})
        s = IAFState(z=torch.zeros(B, H, dtype=tdt), v=torch.full((B, H), -0.2, dtype=tdt))
        init = {"z": s.z, "v": s.v}
        for t in range(T):
            v_pre = (s.v + torch.nn.functional.linear(x[t], w_in)) + torch.nn.functional.linear(s.z, w_rec)
            margins.append((v_pre - 0.8).abs().min().item())
            z, s = iaf_step(x[t], s, w_in, w_rec, p)
            keep("z", z)
            keep("v", s.v)
        call = "norse.torch.functional.iaf.iaf_step(x[t], state, W_in, W_rec, IAFParameters(v_th=0.8, v_reset=-0.2))"
    else:
        if kind == "izhikevich":
            cell = nt.IzhikevichRecurrentCell(N_IN, H, nt.tonic_spiking, input_weights=w_in, recurrent_weights=w_rec, dt=dt)
            params.update({"preset": "tonic_spiking"})
            th = 30.0
        elif kind == "lif_ex":
            p = LIFExParameters(
                delta_T=torch.as_tensor(0.3, dtype=tdt),
                tau_syn_inv=torch.as_tensor(250.0, dtype=tdt),
                tau_mem_inv=torch.as_tensor(60.0, dtype=tdt),
                v_leak=torch.as_tensor(-0.1, dtype=tdt),
                v_th=torch.as_tensor(0.8, dtype=tdt),
                v_reset=torch.as_tensor(-0.3, dtype=tdt),
            )
            params.update({"delta_T": 0.3, "tau_syn_inv": 250.0, "tau_mem_inv": 60.0, "v_leak": -0.1, "v_th": 0.8, "v_reset": -0.3})
            cell = nt.LIFExRecurrentCell(N_IN, H, p, input_weights=w_in, recurrent_weights=w_rec, dt=dt)
            th = 0.8
        else:
            lif = LIFParameters(
                tau_syn_inv=torch.as_tensor(250.0, dtype=tdt),
                tau_mem_inv=torch.as_tensor(100.0, dtype=tdt),
                v_leak=torch.as_tensor(0.1, dtype=tdt),
                v_th=torch.as_tensor(0.5, dtype=tdt),
                v_reset=torch.as_tensor(-0.2, dtype=tdt),
            )
            p = LIFRefracParameters(lif=lif, rho_reset=torch.as_tensor(3.0, dtype=tdt))
            params.update({"tau_syn_inv": 250.0, "tau_mem_inv": 100.0, "v_leak": 0.1, "v_th": 0.5, "v_reset": -0.2, "rho_reset": 3.0})
            cell = nt.LIFRefracRecurrentCell(N_IN, H, p, input_weights=w_in, recurrent_weights=w_rec, dt=dt)
            th = 0.5
        cell = cell.to(tdt)
        w_rec_eff = cell.recurrent_weights.detach().clone()
        s = None
        init = None
        for t in range(T):
            z, s_new = cell(x[t], s)
            if init is None:
                init = {}
            # The voltage before the reset: recomputed from the state for the margin.
            if kind == "izhikevich":
                v_prev = s.v if s is not None else torch.full((B, H), float(nt.tonic_spiking.s.v), dtype=tdt)
                u_prev = s.u if s is not None else torch.full((B, H), float(nt.tonic_spiking.s.u), dtype=tdt)
                z_prev = s.z if s is not None else torch.zeros(B, H, dtype=tdt)
                pp = nt.tonic_spiking.p
                cur = torch.nn.functional.linear(x[t], w_in) + torch.nn.functional.linear(z_prev, w_rec_eff)
                v_pre = v_prev + pp.tau_inv * dt * (pp.sq * v_prev**2 + pp.mn * v_prev + pp.bias - u_prev + cur)
                margins.append((v_pre - th).abs().min().item())
                keep("z", z)
                keep("v", s_new.v)
                keep("u", s_new.u)
            elif kind == "lif_ex":
                keep("z", z)
                keep("v", s_new.v)
                keep("i", s_new.i)
            else:
                keep("z", z)
                keep("v", s_new.lif.v)
                keep("i", s_new.lif.i)
                keep("rho", s_new.rho)
            s = s_new
        call = f"norse.torch.{type(cell).__name__}({N_IN}, {H}, ..., input_weights=W_in, recurrent_weights=W_rec, dt={dt})"
        init = None
    expected = {k: tensor(torch.stack(v), dtype) for k, v in traces.items()}
    model = {"izhikevich": "IzhikevichRecurrentCell", "lif_ex": "LIFExRecurrentCell", "lif_refrac": "LIFRefracRecurrentCell", "iaf": "iaf_step"}[kind]
    case = {
        "schema": "snnc-norse-oracle/1",
        "name": f"{kind}_recurrent_{'f64' if dtype == 'float64' else 'f32'}",
        "model": model,
        "description": f"{model} in={N_IN} hidden={H}, binary input spikes p=0.4, given weights",
        "norse_call": call + " stepped over time",
        "dtype": dtype,
        "generated_with": {"norse": norse.__version__ if hasattr(norse, "__version__") else "1.1.0", "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()},
        "seed": seed,
        "parameters": params,
        "inputs": {"x": tensor(x, dtype)},
        "weights": {"input_weights": tensor(w_in, dtype), "recurrent_weights_given": tensor(w_rec_given, dtype)},
        "initial_state_is_norse_default": kind != "iaf",
        "expected": expected,
        "tolerance": {"atol": 1e-5, "rtol_to_max": 1e-4, "spikes": "exact"} if dtype == "float32" else {"atol": 1e-12, "rtol_to_max": 1e-10, "spikes": "exact"},
        "stats": {"spike_rate": float(torch.stack(traces["z"]).mean()), "min_threshold_margin": min(margins) if margins else None},
    }
    if kind == "iaf":
        case["initial_state"] = {k: tensor(v, dtype) for k, v in init.items()}
    return case, (min(margins) if margins else 1.0)


def main(out):
    for kind in ["izhikevich", "iaf", "lif_ex", "lif_refrac"]:
        for seed in range(100):
            c32, m32 = run(kind, seed, "float32")
            rate = c32["stats"]["spike_rate"]
            if (kind in ("lif_ex", "lif_refrac") or m32 >= MARGIN) and 0.05 <= rate <= 0.6:
                break
        c64, _ = run(kind, seed, "float64")
        for c in (c32, c64):
            with open(f"{out}/{c['name']}.json", "w") as f:
                json.dump(c, f)
            print(c["name"], "seed", seed, "spike rate", round(c["stats"]["spike_rate"], 3), "margin", c["stats"]["min_threshold_margin"])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
