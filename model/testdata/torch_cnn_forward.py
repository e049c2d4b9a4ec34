#!/usr/bin/python3
"""Loads an Accord cnn model's safetensors file into the equivalent
torch.nn.Sequential and writes its logits for the given inputs.

    torch_cnn_forward.py MODEL.safetensors X.f32 OUT.f32

The file is read with numpy (Debian has no safetensors package): an 8-byte
little-endian header length, the JSON header, then raw float32 data. The
Sequential is built from the spec in the metadata (accord_model), e.g.
cnn:28x28x1-c5x32-p2-c5x64-p2-f512-10: cKxN is Conv2d(C, N, K,
padding=K//2) and ReLU, pS is MaxPool2d(S), fN is Linear and ReLU (after
a Flatten), and the last number the output Linear. load_state_dict is
strict, so every name and shape must match. X.f32 holds rows of H·W·C
float32 values in NCHW order; OUT.f32 gets rows × classes float32 logits.
TestCNNMatchesPyTorch (model/conv_test.go) runs it.
"""

import json
import struct
import sys

import numpy as np
import torch


def sequential(spec):
    nn = torch.nn
    body = spec.split(":", 1)[1].split("-")
    h, w, c = (int(v) for v in body[0].split("x"))
    layers, flat, width = [], False, h * w * c
    for i, f in enumerate(body[1:]):
        if i == len(body) - 2 or f[0] == "f":
            if not flat:
                layers.append(nn.Flatten())
                flat = True
            n = int(f.lstrip("f"))
            layers.append(nn.Linear(width, n))
            width = n
            if f[0] == "f":
                layers.append(nn.ReLU())
        elif f[0] == "c":
            k, n = (int(v) for v in f[1:].split("x"))
            layers += [nn.Conv2d(c, n, k, padding=k // 2), nn.ReLU()]
            c = n
            width = c * h * w
        elif f[0] == "p":
            s = int(f[1:])
            layers.append(nn.MaxPool2d(s))
            h, w = h // s, w // s
            width = c * h * w
    return nn.Sequential(*layers), body[0]


def main():
    path, xpath, out = sys.argv[1:4]
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    spec = header.pop("__metadata__")["accord_model"]
    state = {}
    for name, t in header.items():
        lo, hi = t["data_offsets"]
        assert t["dtype"] == "F32", name
        state[name] = torch.from_numpy(np.frombuffer(data[lo:hi], dtype="<f4").reshape(t["shape"]).copy())
    net, shape = sequential(spec)
    names = [k for k in net.state_dict().keys()]
    stored = sorted(header, key=lambda k: header[k]["data_offsets"][0])  # the data's order
    assert names == stored, (names, stored)
    net.load_state_dict(state, strict=True)
    h, w, c = (int(v) for v in shape.split("x"))
    x = torch.from_numpy(np.fromfile(xpath, dtype="<f4").reshape(-1, c, h, w).copy())
    with torch.no_grad():
        y = net(x)
    y.numpy().astype("<f4").tofile(out)


if __name__ == "__main__":
    main()
