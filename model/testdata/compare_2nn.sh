#!/bin/sh
# compare_2nn.sh: the 2NN's training throughput on one thread, our builds next
# to PyTorch: samples/s at batch 10 and 64, the median of ROUNDS interleaved
# rounds (each round runs every configuration once, on CPU 0).
#
#   model/testdata/compare_2nn.sh [ROUNDS]        # from the repository root; default 3
#
# Configurations (those this machine can run):
#   static         CGO_ENABLED=0 (make build): the kernel chosen at run time
#   static/KERNEL  the same binary with ACCORD_KERNEL=avx2, avx512, gonum
#   openblas       -tags openblas (needs libopenblas-dev)
#   pytorch        model/testdata/torch_2nn.py (needs python3-torch)
#   pytorch/avx2   the same with OPENBLAS_CORETYPE=Haswell: PyTorch's BLAS
#                  (Debian's torch calls OpenBLAS) held to AVX2, the yardstick
#                  for static/avx2 on a machine that has AVX-512
# Ratios are to pytorch, and to pytorch/avx2 for static/avx2.
set -eu
rounds=${1:-3}
go=${GO:-go}
cpu=${BENCH_CPU:-0}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

CGO_ENABLED=0 $go test -c -o "$dir/static.test" ./model/
configs="static"
for k in avx512 avx2 gonum; do
	# A kernel the CPU cannot run makes the binary say so on stderr.
	if ! ACCORD_KERNEL=$k "$dir/static.test" -test.run '^$' 2>&1 | grep -q 'kernel unavailable'; then
		configs="$configs static/$k"
	fi
done
if [ -e /usr/include/x86_64-linux-gnu/cblas.h ] || [ -e /usr/include/cblas.h ] || [ -e /usr/include/openblas/cblas.h ]; then
	CGO_ENABLED=1 $go test -c -tags openblas -o "$dir/openblas.test" ./model/ && configs="$configs openblas"
fi
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
	configs="$configs pytorch pytorch/avx2"
fi

bench() { # config → lines "config batch samples/s"
	case $1 in
	static | static/* | openblas)
		bin=$dir/${1%%/*}.test
		k=${1#static/}
		[ "$k" = "$1" ] && k=
		ACCORD_KERNEL=$k taskset -c "$cpu" "$bin" -test.run '^$' -test.benchtime 2s \
			-test.bench 'Train2NN/[^/]*/threads=1/batch=(10|64)$' 2>/dev/null |
			awk -v c="$1" '/^BenchmarkTrain2NN/ { split($1, p, "batch="); print c, p[2] + 0, $(NF-1) }'
		;;
	pytorch | pytorch/avx2)
		core=
		[ "$1" = pytorch/avx2 ] && core=Haswell
		OPENBLAS_CORETYPE=$core taskset -c "$cpu" /usr/bin/python3 model/testdata/torch_2nn.py --threads 1 |
			awk -v c="$1" '{ for (i = 1; i <= NF; i++) { if ($i ~ /^batch=/) { split($i, p, "="); b = p[2] + 0 } if ($i == "samples/s") v = $(i-1) } print c, b, v }'
		;;
	esac
}

echo "2NN (mlp:784-200-200-10), one thread on CPU $cpu, $rounds interleaved rounds: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
for r in $(seq "$rounds"); do
	for c in $configs; do
		bench "$c"
	done
done >"$dir/results"

awk -v configs="$configs" '
function median(s,   n, a, i, j, t) {
	n = split(s, a, " ")
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{ v[$1, $2] = v[$1, $2] " " $3 }
END {
	n = split(configs, cs, " ")
	for (i = 1; i <= n; i++) for (b = 10; b <= 64; b += 54) m[cs[i], b] = median(v[cs[i], b])
	printf "%-16s %12s %9s %12s %9s\n", "configuration", "batch 10", "×pytorch", "batch 64", "×pytorch"
	for (i = 1; i <= n; i++) {
		c = cs[i]
		ref = (c == "static/avx2" && m["pytorch/avx2", 10] > 0) ? "pytorch/avx2" : "pytorch"
		line = sprintf("%-16s", c)
		for (b = 10; b <= 64; b += 54) {
			r = m[ref, b] > 0 ? sprintf("%.2f", m[c, b] / m[ref, b]) : "-"
			line = line sprintf(" %12.0f %9s", m[c, b], r)
		}
		print line
	}
	if (m["pytorch/avx2", 10] > 0) print "(static/avx2 is compared with pytorch/avx2; every other row with pytorch)"
}' "$dir/results"
