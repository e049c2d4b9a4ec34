#!/usr/bin/python3
"""PyTorch's training throughput for the FedAvg CNN: the yardstick for
model's BenchmarkTrainCNN.

It runs the loop BenchmarkTrainCNN (model/train_bench_test.go) times: the
FedAvg paper's MNIST CNN, cnn:28x28x1-c5x32-p2-c5x64-p2-f512-10
(Conv2d(1,32,5,padding=2)-ReLU-MaxPool2d(2)-Conv2d(32,64,5,padding=2)-ReLU-
MaxPool2d(2)-Flatten-Linear(3136,512)-ReLU-Linear(512,10)), float32, one
epoch of plain SGD (learning rate 0.01) over 640 random MNIST-shaped
examples (standard normal features, uniform labels) in a shuffled order,
each minibatch gathered into a contiguous buffer, then forward,
cross-entropy, backward and the SGD step. It prints samples/s at batch 10
and 64, the median of several timed epochs after a warm-up epoch.

    taskset -c 0 /usr/bin/python3 model/testdata/torch_cnn.py          # 1 thread
    /usr/bin/python3 model/testdata/torch_cnn.py --threads 2

torch.set_num_threads fixes the intra-op threads, and OMP_NUM_THREADS /
OPENBLAS_NUM_THREADS are set before torch is imported so that BLAS follows.
"""

import argparse
import os
import sys
import time

EXAMPLES = 640


def cnn(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3136, 512), nn.ReLU(), nn.Linear(512, 10))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batches", default="10,64", help="comma-separated batch sizes")
    p.add_argument("--epochs", type=int, default=5, help="timed epochs per batch size")
    a = p.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(a.threads)

    import torch

    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    x = torch.randn(EXAMPLES, 1, 28, 28, dtype=torch.float32)
    y = torch.randint(0, 10, (EXAMPLES,))
    for batch in (int(b) for b in a.batches.split(",")):
        net = cnn(torch)
        opt = torch.optim.SGD(net.parameters(), lr=0.01)
        loss_fn = torch.nn.CrossEntropyLoss()
        xb = torch.empty(batch, 1, 28, 28)
        yb = torch.empty(batch, dtype=torch.long)

        def epoch():
            perm = torch.randperm(EXAMPLES)
            for start in range(0, EXAMPLES, batch):
                idx = perm[start:start + batch]
                rows = idx.numel()
                bx, by = xb[:rows], yb[:rows]
                torch.index_select(x, 0, idx, out=bx)
                torch.index_select(y, 0, idx, out=by)
                opt.zero_grad(set_to_none=False)
                loss = loss_fn(net(bx), by)
                loss.backward()
                opt.step()

        epoch()  # warm-up
        rates = []
        for _ in range(a.epochs):
            t0 = time.perf_counter()
            epoch()
            rates.append(EXAMPLES / (time.perf_counter() - t0))
        rates.sort()
        print(f"pytorch {torch.__version__} CNN threads={a.threads} batch={batch}: "
              f"{rates[len(rates) // 2]:.0f} samples/s (median of {a.epochs} epochs; best {rates[-1]:.0f})")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
