# PyTorch's forward pass of a model BenchmarkServe* serves, on one thread:
# latency p50/p99 and throughput at batch 1 and at batch 32.
#
#   torch_forward.py MODEL [SECONDS]
#
# MODEL is 2nn (mlp:784-200-200-10) or cnn (cnn:28x28x1-c5x32-p2-c5x64-p2-f512-10,
# the FedAvg paper's MNIST CNN as model/spec_cnn.go builds it: 5x5
# convolutions padded to keep 28x28 and 14x14, 2x2 max pooling). Both end
# in a softmax, as model.Predictor does. Each batch size is timed for
# SECONDS (default 2). Prints one JSON line. Used by BenchmarkTorch2NN and
# BenchmarkTorchCNN (bench_test.go).
import json, sys, time
import torch

torch.set_num_threads(1)
nn = torch.nn
models = {
    "2nn": lambda: nn.Sequential(
        nn.Linear(784, 200), nn.ReLU(),
        nn.Linear(200, 200), nn.ReLU(),
        nn.Linear(200, 10), nn.Softmax(dim=1)),
    "cnn": lambda: nn.Sequential(
        nn.Unflatten(1, (1, 28, 28)),
        nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(3136, 512), nn.ReLU(),
        nn.Linear(512, 10), nn.Softmax(dim=1)),
}
if len(sys.argv) < 2 or sys.argv[1] not in models:
    sys.exit("usage: torch_forward.py 2nn|cnn [SECONDS]")
net = models[sys.argv[1]]().eval()
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
out = {}
with torch.inference_mode():
    for batch in (1, 32):
        # The request's rows as the server receives them: 784 values each.
        x = torch.rand(batch, 784)
        for _ in range(20):
            net(x)
        lat = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            net(x)
            lat.append(time.perf_counter() - t0)
        lat.sort()
        out[f"batch{batch}"] = {
            "p50_us": lat[len(lat) // 2] * 1e6,
            "p99_us": lat[int(len(lat) * 0.99)] * 1e6,
            "rows_per_s": batch * len(lat) / sum(lat),
        }
print(json.dumps(out))
