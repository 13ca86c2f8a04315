"""examples/sew_resnet.ron in Norse 1.1.0 + torch: times training steps side by side with snnc.

The same network built from Norse's LIFCell and torch modules: a stem
Conv2d(1->16, 3x3, pad 1, no bias) -> BatchNorm2d -> LIF -> max_pool2d(2); a
SEW block (two conv-BN-LIF, the block's output spikes added to its input
spikes); a stride-2 conv-BN-LIF down to 32 channels at 7x7; a second SEW
block; Flatten -> Linear(1568 -> 10) -> LI, decoded as the Norse tutorial
decodes (log_softmax of the maximum over time). The image is fed directly
at each of the 8 steps. BatchNorm is the torch module called at every step
on that step's batch (Norse's `Lift(BatchNorm2d)`), and every LIF layer's
tau_mem_inv (200) is a learnable 0-d parameter given to the optimizer
(Norse does not register parameters inside LIFParameters).

  --no-bn            the same network without BatchNorm
  --tdbn             tdBN (`variant: time_batched`): layer by layer, each
                     BatchNorm over all T*B samples of its convolution
  --no-learnable     fixed tau_mem_inv
  --time-steps N     time N training steps (forward, backward, Adam) of batch
                     --batch on the first training images; print the median

Usage: norse_sew_resnet.py [--time-steps 30] [--batch 32] [--threads 2] [--no-bn | --tdbn] [--no-learnable]
Data: Debian's dataset-fashion-mnist, scaled to [0, 1], normalised (0.2860, 0.3530).
"""
import argparse, gzip, os, statistics, time

import numpy as np
import torch
import torch.nn.functional as F
from norse.torch import LICell, LIFCell, LIFParameters

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


class ConvBnLif(torch.nn.Module):
    def __init__(self, cin, cout, stride, bn, learnable):
        super().__init__()
        self.conv = torch.nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn = torch.nn.BatchNorm2d(cout) if bn else None
        tau = torch.tensor(200.0)
        self.tau = torch.nn.Parameter(tau) if learnable else None
        self.lif = LIFCell(p=LIFParameters(tau_mem_inv=self.tau if learnable else tau))

    def forward(self, x, s):
        z = self.conv(x)
        if self.bn is not None:
            z = self.bn(z)
        return self.lif(z, s)


class SewResNet(torch.nn.Module):
    def __init__(self, bn, learnable):
        super().__init__()
        self.stem = ConvBnLif(1, 16, 1, bn, learnable)
        self.b1c1 = ConvBnLif(16, 16, 1, bn, learnable)
        self.b1c2 = ConvBnLif(16, 16, 1, bn, learnable)
        self.down = ConvBnLif(16, 32, 2, bn, learnable)
        self.b2c1 = ConvBnLif(32, 32, 1, bn, learnable)
        self.b2c2 = ConvBnLif(32, 32, 1, bn, learnable)
        self.fc = torch.nn.Linear(1568, 10)
        self.out = LICell()

    def forward(self, x):
        s = [None] * 7
        vs = []
        for _ in range(T):
            z, s[0] = self.stem(x, s[0])
            p = F.max_pool2d(z, 2)
            z, s[1] = self.b1c1(p, s[1])
            z, s[2] = self.b1c2(z, s[2])
            r1 = z + p
            d, s[3] = self.down(r1, s[3])
            z, s[4] = self.b2c1(d, s[4])
            z, s[5] = self.b2c2(z, s[5])
            r2 = z + d
            v, s[6] = self.out(self.fc(r2.flatten(1)), s[6])
            vs.append(v)
        m, _ = torch.max(torch.stack(vs), 0)
        return F.log_softmax(m, dim=1)


class SewResNetTd(SewResNet):
    """The same network with tdBN (snnc's `variant: time_batched`, the
    example's BatchNorm): layer by layer, each convolution over all T·B
    samples at once, its BatchNorm's statistics over all of them, then the
    layer's LIF cell over time (what Norse's `LIF` module runs)."""

    def layer(self, m, x):
        t, b = x.shape[0], x.shape[1]
        z = m.bn(m.conv(x.flatten(0, 1))).unflatten(0, (t, b))
        s, out = None, []
        for k in range(t):
            o, s = m.lif(z[k], s)
            out.append(o)
        return torch.stack(out)

    def forward(self, x):
        x = x.unsqueeze(0).expand(T, *x.shape)
        z = self.layer(self.stem, x)
        p = F.max_pool2d(z.flatten(0, 1), 2).unflatten(0, (T, x.shape[1]))
        z = self.layer(self.b1c2, self.layer(self.b1c1, p))
        r1 = z + p
        d = self.layer(self.down, r1)
        z = self.layer(self.b2c2, self.layer(self.b2c1, d))
        r2 = z + d
        s, vs = None, []
        for k in range(T):
            v, s = self.out(self.fc(r2[k].flatten(1)), s)
            vs.append(v)
        m, _ = torch.max(torch.stack(vs), 0)
        return F.log_softmax(m, dim=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--time-steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-bn", action="store_true")
    ap.add_argument("--tdbn", action="store_true", help="tdBN (BatchNorm over all T*B samples), layer by layer")
    ap.add_argument("--no-learnable", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = SewResNetTd if a.tdbn else SewResNet
    model = net(bn=not a.no_bn, learnable=not a.no_learnable)
    model.train()
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
    what = f"bn={'tdbn' if a.tdbn else not a.no_bn} learnable={not a.no_learnable}"
    print(f"norse sew_resnet ({what}) train step: median {med * 1e3:.1f} ms over {len(times)} steps of batch "
          f"{a.batch}, {a.batch / med:.0f} samples/s")


if __name__ == "__main__":
    main()
