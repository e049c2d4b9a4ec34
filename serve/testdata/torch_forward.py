# A PyTorch forward pass of the 2NN (mlp:784-200-200-10, softmax output) on
# one thread: latency p50/p99 at batch 1 and throughput at batch 32.
# Prints one JSON line. Used by BenchmarkTorch2NN (bench_test.go).
import json, sys, time
import torch

torch.set_num_threads(1)
seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
net = torch.nn.Sequential(
    torch.nn.Linear(784, 200), torch.nn.ReLU(),
    torch.nn.Linear(200, 200), torch.nn.ReLU(),
    torch.nn.Linear(200, 10), torch.nn.Softmax(dim=1)).eval()
out = {}
with torch.inference_mode():
    for batch in (1, 32):
        x = torch.rand(batch, 784)
        for _ in range(100):
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
