#!/bin/sh
# compare_serve.sh: accord serve's latency and throughput on the FedAvg 2NN
# and CNN, next to the model's forward pass alone and PyTorch's on one
# thread, all in one run on one core (BENCH_CPU, default 0): the gRPC
# server and its clients share that core (GOMAXPROCS=1), as does PyTorch.
#
#   serve/testdata/compare_serve.sh        # from the repository root
#
# The rows, each for the 2NN and the CNN side by side:
#   accord serve …      BenchmarkServe2NN, BenchmarkServeCNN: one-row gRPC
#                       ModelInfer calls over mutual TLS on loopback;
#                       latency is a call's, rows/s all clients' together
#   model.Predict …     BenchmarkPredict2NN, BenchmarkPredictCNN: the
#                       forward pass alone; latency is one call of the batch
#   PyTorch …           BenchmarkTorch2NN, BenchmarkTorchCNN
#                       (serve/testdata/torch_forward.py, python3-torch)
# BENCHTIME (default 3s) is go test's -benchtime for each benchmark;
# BENCH_RAW, if set, is a file that gets go test's own output.
set -eu
go=${GO:-go}
cpu=${BENCH_CPU:-0}
benchtime=${BENCHTIME:-3s}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

$go test -c -o "$dir/serve.test" ./serve/
echo "accord serve on one core (CPU $cpu, GOMAXPROCS=1; server and clients in one process), -benchtime $benchtime: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
# The PyTorch benchmarks run testdata/torch_forward.py from the package's folder.
(cd serve && GOMAXPROCS=1 taskset -c "$cpu" "$dir/serve.test" -test.run '^$' -test.cpu 1 -test.benchtime "$benchtime" \
	-test.bench '^Benchmark(Serve|Predict|Torch)(2NN|CNN)$') >"$dir/raw" 2>&1 || { cat "$dir/raw"; exit 1; }
[ -z "${BENCH_RAW:-}" ] || cp "$dir/raw" "$BENCH_RAW"
grep -E '^(--- SKIP|    bench_test)' "$dir/raw" | sed 's/^ */  /' || true

awk '
function cell(v) { return v == "" ? "-" : v }
/^Benchmark/ {
	name = $1
	m = name ~ /2NN/ ? "2nn" : "cnn"
	row = ""
	if (name ~ /^BenchmarkServe/) {
		if (name ~ /\/batch1\/clients1$/) row = "serve1"
		else if (name ~ /\/batch1\/clients32$/) row = "serve32"
		else if (name ~ /\/dynamic/) { row = "dyn"; split(name, p, "/"); split(p[2], w, "-"); wait[m] = w[2] }
	} else if (name ~ /^BenchmarkPredict/) {
		row = name ~ /\/batch1$/ ? "pred1" : "pred32"
	}
	for (i = 3; i < NF; i += 2) {
		v = $(i); u = $(i + 1)
		r = row
		if (name ~ /^BenchmarkTorch/) {
			split(u, q, "-"); r = q[1] == "batch1" ? "torch1" : "torch32"; sub(/^batch[0-9]+-/, "", u)
		}
		if (r == "") continue
		if (u == "p50-µs") p50[m, r] = sprintf("%.0f", v)
		else if (u == "p99-µs") p99[m, r] = sprintf("%.0f", v)
		else if (u == "rows/s") rps[m, r] = sprintf("%.0f", v)
		else if (u == "rows/batch" && r == "dyn") rpb[m] = sprintf("%.1f", v)
	}
}
END {
	n = split("serve1 serve32 dyn pred1 pred32 torch1 torch32", rows, " ")
	label["serve1"] = "accord serve, batch 1, 1 client"
	label["serve32"] = "accord serve, batch 1, 32 clients"
	label["dyn"] = "accord serve, dynamic 32, 32 clients"
	label["pred1"] = "model.Predict, batch 1"
	label["pred32"] = "model.Predict, batch 32"
	label["torch1"] = "PyTorch (1 thread), batch 1"
	label["torch32"] = "PyTorch (1 thread), batch 32"
	printf "2NN: mlp:784-200-200-10; CNN: cnn:28x28x1-c5x32-p2-c5x64-p2-f512-10 (McMahan et al. 2017)\n"
	printf "%-37s | %-28s | %-28s\n", "", "2NN", "CNN"
	# µ is two bytes, and awk pads bytes: 9 bytes are 8 columns.
	printf "%-37s | %9s %9s %10s | %9s %9s %10s\n", "", "p50 µs", "p99 µs", "rows/s", "p50 µs", "p99 µs", "rows/s"
	for (i = 1; i <= n; i++) {
		r = rows[i]
		printf "%-37s | %8s %8s %10s | %8s %8s %10s\n", label[r], cell(p50["2nn", r]), cell(p99["2nn", r]), cell(rps["2nn", r]),
			cell(p50["cnn", r]), cell(p99["cnn", r]), cell(rps["cnn", r])
	}
	printf "dynamic batching: batches of up to 32 rows, waiting up to %s (2NN) and %s (CNN); they ran %s and %s rows on average\n",
		cell(wait["2nn"]), cell(wait["cnn"]), cell(rpb["2nn"]), cell(rpb["cnn"])
	print "latency: accord serve, one request of one row; model.Predict and PyTorch, one forward pass of the whole batch"
}' "$dir/raw"
