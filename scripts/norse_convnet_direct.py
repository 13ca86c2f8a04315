"""examples/convnet_direct.ron in Norse 1.1.0: scores snnc-trained weights, and times training steps.

The same network built from Norse's own modules (LIFCell, LILinearCell,
torch Conv2d/Linear/max_pool2d), the image fed directly at each of the 8
steps, decoded as the Norse tutorial decodes (log_softmax of the maximum over
time of the LI voltage).

  --weights W.json   load weights written by `snnc train` (weights.json) and
                     print the test loss and accuracy Norse computes with them
  --time-steps N     time N training steps (forward, backward, Adam) of batch
                     --batch on the first training images; print the median
                     and the samples per second

Usage: norse_convnet_direct.py [--weights W.json] [--time-steps 50] [--batch 32] [--threads 2]
Data: Debian's dataset-fashion-mnist, scaled to [0, 1], normalised (0.2860, 0.3530).
"""
import argparse, gzip, json, os, statistics, time

import numpy as np
import torch
import torch.nn.functional as F
from norse.torch import LIFCell, LIFParameters, LILinearCell

ROOT = "/usr/share/datasets/fashion-mnist"
T = 8


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = int.from_bytes(data[0:4], "big") & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(split):
    pre = "train" if split == "train" else "t10k"
    x = idx(os.path.join(ROOT, f"{pre}-images-idx3-ubyte.gz")).astype(np.float32) / 255.0
    y = idx(os.path.join(ROOT, f"{pre}-labels-idx1-ubyte.gz")).astype(np.int64)
    x = (x - np.float32(0.2860)) / np.float32(0.3530)
    return torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y)


class ConvNetDirect(torch.nn.Module):
    def __init__(self):
        super().__init__()
        fast = LIFParameters(tau_mem_inv=torch.tensor(200.0))
        self.conv1 = torch.nn.Conv2d(1, 32, 5)
        self.lif1 = LIFCell(p=fast)
        self.conv2 = torch.nn.Conv2d(32, 64, 5)
        self.lif2 = LIFCell(p=fast)
        self.fc1 = torch.nn.Linear(1024, 256)
        self.lif3 = LIFCell(p=fast)
        self.out = LILinearCell(256, 10)

    def forward(self, x):
        s1 = s2 = s3 = so = None
        vs = []
        for _ in range(T):
            z = self.conv1(x)
            z, s1 = self.lif1(z, s1)
            z = F.max_pool2d(z, 2, 2)
            z = 4.0 * self.conv2(z)
            z, s2 = self.lif2(z, s2)
            z = F.max_pool2d(z, 2, 2)
            z = z.flatten(1)
            z = 4.0 * self.fc1(z)
            z, s3 = self.lif3(z, s3)
            v, so = self.out(z, so)
            vs.append(v)
        m, _ = torch.max(torch.stack(vs), 0)
        return F.log_softmax(m, dim=1)


def load_weights(model, path):
    with open(path) as f:
        w = json.load(f)
    names = {
        "conv1.weight": model.conv1.weight, "conv1.bias": model.conv1.bias,
        "conv2.weight": model.conv2.weight, "conv2.bias": model.conv2.bias,
        "fc1.weight": model.fc1.weight, "fc1.bias": model.fc1.bias,
        "out.input_weights": model.out.input_weights,
    }
    with torch.no_grad():
        for name, p in names.items():
            t = w[name]
            p.copy_(torch.tensor(t["data"], dtype=torch.float32).reshape(t["shape"]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights")
    ap.add_argument("--time-steps", type=int, default=0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = ConvNetDirect()
    if a.weights:
        load_weights(model, a.weights)
        x, y = load("test")
        loss, correct = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(y), 500):
                lp = model(x[i:i + 500])
                loss += F.nll_loss(lp, y[i:i + 500], reduction="sum").item()
                correct += (lp.argmax(1) == y[i:i + 500]).sum().item()
        print(f"norse test loss {loss / len(y):.5f}, test accuracy {correct / len(y):.4f} ({correct}/{len(y)})")
    if a.time_steps:
        x, y = load("train")
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        times = []
        for s in range(a.time_steps + 3):
            i = (s * a.batch) % (len(y) - a.batch)
            t0 = time.perf_counter()
            opt.zero_grad()
            loss = F.nll_loss(model(x[i:i + a.batch]), y[i:i + a.batch])
            loss.backward()
            opt.step()
            if s >= 3:
                times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        print(f"norse train step: median {med * 1e3:.1f} ms over {len(times)} steps of batch {a.batch}, "
              f"{a.batch / med:.0f} samples/s (mean over all {a.batch * len(times) / sum(times):.0f})")


if __name__ == "__main__":
    main()
