# Accord's build. `make demo` and `make test` are the two commands a new user
# runs; see README.md.

GO        ?= go
BIN       := bin
GOARCH    := $(shell $(GO) env GOARCH)
# OpenBLAS is optional: the openblas build is tested and benchmarked only
# where Debian's libopenblas-dev is installed (.ci/run installs it).
HAVE_OPENBLAS := $(shell test -e /usr/include/x86_64-linux-gnu/cblas.h -o -e /usr/include/cblas.h -o -e /usr/include/openblas/cblas.h && echo yes)

.PHONY: all build build-simd build-openblas test test-cross test-kernels lint check-deps bench bench-2nn bench-serve bench-scale python3-torch scenarios demo byhand proto clean fuzz

all: build

# The accord binary links no testing package: hashicorp/raft keeps its
# cluster test kit in testing.go, a non-test file that imports "testing", so
# go.mod replaces raft by third_party/hashicorp/raft, the same verified
# module without that file and its tests (check-deps compares the two).

## build: the static binary, no cgo. On amd64 it carries the assembly kernels and picks
## the widest the CPU runs at start-up: matrix products (model/internal/sgemm: avx512,
## avx2, else gonum's), mask expansion (aggregate/secagg: VAES on ZMM or YMM, AES-NI),
## aggregation (aggregate: AVX-512, AVX2+FMA). ACCORD_KERNEL=gonum|avx2|avx512 forces the
## matrix kernel. Other architectures (and -tags purego) get the pure-Go paths.
build:
	@[ -x $(BIN)/accord ] || echo "building $(BIN)/accord: the first build downloads and compiles the dependencies (a few minutes on 2 cores)"
	CGO_ENABLED=0 $(GO) build -o $(BIN)/accord ./cmd/accord

## build-simd: the same binary built with GOEXPERIMENT=simd (the kernels no longer need
## it: kept for scripts that call it).
build-simd:
	CGO_ENABLED=0 GOEXPERIMENT=simd $(GO) build -o $(BIN)/accord-simd ./cmd/accord

## build-openblas: cgo build with OpenBLAS as the default matrix kernel (needs libopenblas-dev); not static.
build-openblas:
	CGO_ENABLED=1 $(GO) build -tags openblas -o $(BIN)/accord-openblas ./cmd/accord

## check-deps: the binary links no testing package, no package of ours outside tests imports
## testing, third_party/hashicorp/raft is the verified module's files, unchanged, and every
## import points down the layers coordinator/DESIGN.md draws (tools/layers).
check-deps:
	@if $(GO) list -deps ./cmd/accord | grep -qx testing; then echo "the accord binary links the testing package"; exit 1; fi
	@bad=$$($(GO) list -deps -f '{{if not .Standard}}{{range .Imports}}{{if eq . "testing"}}{{$$.ImportPath}} {{end}}{{end}}{{end}}' ./cmd/accord); \
	if [ -n "$$bad" ]; then echo "packages linked into accord import testing: $$bad"; exit 1; fi
	@v=$$(sed -n 's/^\tgithub.com\/hashicorp\/raft \(v[^ ]*\).*/\1/p' go.mod); \
	dir=$$(cd /tmp && GOFLAGS=-mod=mod $(GO) mod download -json github.com/hashicorp/raft@$$v | sed -n 's/.*"Dir": "\(.*\)",/\1/p'); \
	for f in third_party/hashicorp/raft/*.go; do cmp -s "$$f" "$$dir/$$(basename $$f)" || { echo "$$f differs from raft $$v"; exit 1; }; done
	@echo "check-deps: accord links no testing package; third_party/hashicorp/raft matches the verified module"
	@$(GO) run ./tools/layers coordinator/DESIGN.md

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## test: formatting, vet, the tests under -race (summarised by tools/testsummary: each
## package's result, failing tests' output, then every skipped test and why), the
## linux/arm64 cross-build, and every kernel this machine can run (test-kernels).
test: lint check-deps test-cross
	$(GO) build -o $(BIN)/testsummary ./tools/testsummary
	$(GO) test -race -timeout 12m -json ./... | $(BIN)/testsummary
	$(MAKE) test-kernels

## test-cross: vet and build for linux/arm64, where only the pure-Go paths exist.
test-cross:
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) vet ./...
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build ./...

## test-kernels: prints the kernels this machine can test (each package's tests run every
## one of them against its plain-Go reference: sgemm against a float64 triple loop, the
## fused AES-CTR paths against crypto/aes, the aggregation kernels bit for bit), runs the
## trainer's tests under each matrix kernel (ACCORD_KERNEL), the pure-Go paths other
## architectures take (-tags purego), and the openblas build when libopenblas-dev is there.
test-kernels:
	@echo "== kernels this machine can test"
	@$(GO) test -count=1 -v -run '^TestKernelList$$' ./model/internal/sgemm/ ./aggregate/ ./aggregate/secagg/ | \
		sed -n 's/^ *[a-z_0-9]*\.go:[0-9]*: /  /p'
	@for k in $$($(GO) test -count=1 -v -run '^TestKernelList$$' ./model/internal/sgemm/ | sed -n 's/.*sgemm kernels tested here: //p' | tr -d ,); do \
		echo "== the trainer with ACCORD_KERNEL=$$k"; \
		ACCORD_KERNEL=$$k $(GO) test -count=1 -timeout 5m ./model/... || exit 1; \
	done
	@echo "== the pure-Go paths (-tags purego), as on other architectures"
	$(GO) vet -tags purego ./model/... ./aggregate/...
	$(GO) test -count=1 -tags purego -timeout 10m ./model/... ./aggregate/...
ifeq ($(GOARCH),amd64)
	GOEXPERIMENT=simd $(GO) vet ./model/... ./aggregate/...
endif
ifeq ($(HAVE_OPENBLAS),yes)
	@echo "== the openblas build (cgo)"
	@CGO_ENABLED=1 $(GO) test -count=1 -tags openblas -v -run '^TestKernelList$$' ./model/internal/sgemm/ | sed -n 's/^ *[a-z_0-9]*\.go:[0-9]*: /  /p'
	CGO_ENABLED=1 $(GO) test -count=1 -tags openblas -timeout 5m ./model/...
else
	@echo "skipping the openblas build: libopenblas-dev is not installed"
endif

## bench: the 2NN's training throughput with every available kernel next to PyTorch's
## (bench-2nn); accord serve's latency and throughput for the 2NN and the CNN next to
## PyTorch's forward pass (bench-serve); the kernels' GFLOP/s; one round's protocol cost and failover times
## (with and without 200 idle connections on every Raft port); disk after a 1,000-round job
## with and without retention; secure aggregation's mask expansion (each fused path next to
## Go's and OpenSSL's AES-CTR, measured in the same run) and per-round compute for 100–1000
## clients; aggregation rules' GB/s next to NumPy's w @ X (one core, all cores); the scale
## benchmark (bench-scale); FedAvg's and FedAvgM's rounds to 97% on pathological non-IID
## MNIST (~60 min).
bench: bench-2nn bench-serve bench-scale
	taskset -c 0 $(GO) test -run '^$$' -bench . -benchtime 1s ./model/internal/sgemm/
	$(GO) test -run '^$$' -bench . -benchtime 2s ./model/
ifeq ($(HAVE_OPENBLAS),yes)
	CGO_ENABLED=1 $(GO) test -tags openblas -run '^$$' -bench . -benchtime 2s ./model/...
endif
	$(GO) test -run '^$$' -bench RoundProtocol -benchtime 20x ./coordinator/
	$(GO) test -run '^$$' -bench Failover -benchtime 10x ./coordinator/
	$(GO) test -run '^$$' -bench RetentionDisk -benchtime 1x -timeout 40m ./coordinator/
	taskset -c 0 $(GO) test -run '^$$' -bench MaskExpansion -cpu 1 -count 3 ./aggregate/secagg/
	$(GO) test -run '^$$' -bench 'Round/' -benchtime 1x -timeout 60m ./aggregate/secagg/
	taskset -c 0 $(GO) test -run '^$$' -bench . -benchtime 5x -cpu 1 ./aggregate/
	$(GO) test -run '^$$' -bench . -benchtime 5x ./aggregate/
	@/usr/bin/python3 -c 'import numpy' 2>/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-numpy) >/dev/null 2>&1; } || \
		echo "note: could not install python3-numpy; the NumPy comparison is skipped"
	-@/usr/bin/python3 -c 'import numpy' 2>/dev/null && \
		taskset -c 0 /usr/bin/python3 aggregate/testdata/numpy_gemv.py --threads 1 && \
		/usr/bin/python3 aggregate/testdata/numpy_gemv.py --threads $$(nproc)
	$(GO) test -run '^$$' -bench PathologicalRoundsTo97 -benchtime 1x -timeout 90m ./scenarios/

## bench-scale: 1,000 lightweight participants (real gRPC over mutual TLS, a precomputed 2NN
## update, the SecAgg+ client's real cryptography) connected to 3 real coordinator processes;
## cohorts of 100 and 1,000, plain and SecAgg+: round time, the leader process's CPU-seconds
## per round and peak RSS, next to the issue's goals, in one table (~10 min; SCALE_ROUNDS
## measured rounds each, default 5).
SCALE_ROUNDS ?= 5
bench-scale:
	ACCORD_SCALE_ROUNDS=$(SCALE_ROUNDS) $(GO) test -run '^$$' -bench '^BenchmarkScale$$' -benchtime 1x -timeout 60m ./coordinator/

## bench-2nn: the 2NN's samples/s on one thread (CPU 0) at batch 10 and 64: the static
## build with each kernel (ACCORD_KERNEL), the openblas build, and PyTorch (Debian's
## python3-torch, installed when missing and possible), medians of 3 interleaved rounds.
bench-2nn: python3-torch
	GO=$(GO) sh model/testdata/compare_2nn.sh 3

## bench-serve: accord serve on one core (CPU 0, server and clients in one process): p50,
## p99 and rows/s of one-row gRPC requests over mutual TLS for the 2NN and the CNN, at
## batch 1 (1 and 32 clients) and with dynamic batching (32 clients), next to the forward
## pass alone and PyTorch's on one thread, in one table.
bench-serve: python3-torch
	GO=$(GO) sh serve/testdata/compare_serve.sh

# python3-torch: Debian's PyTorch for the comparisons, installed when missing and possible.
python3-torch:
	@/usr/bin/python3 -c 'import torch' 2>/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch) >/dev/null 2>&1; } || \
		echo "note: could not install python3-torch; the PyTorch comparison is skipped"

## demo: the FedAvg MNIST demo, an in-process federation on loopback.
demo: build
	$(BIN)/accord demo

## scenarios: every scenario file, each writing its report and plots into bin/reports/NAME/, then the real-process tests in full: leader killed 3 times
## in a 30-round job, and 20 random coordinators killed in a 60-round job; then 20% Byzantine
## participants against FedAvg, median, trimmed mean, Multi-Krum and grouped secure median (long).
scenarios: build
	@for f in scenarios/*.yaml; do n=$$(basename $$f .yaml); echo "== $$f (report: $(BIN)/reports/$$n/report.md)"; \
		$(BIN)/accord scenario run $$f --report $(BIN)/reports/$$n || exit 1; done
	ACCORD_PROCESS_FULL=1 $(GO) test -count=1 -v -timeout 30m ./scenarios/processes/
	ACCORD_LONG=1 $(GO) test -count=1 -v -run Byzantine -timeout 60m ./scenarios/

## byhand: README.md's "Running a federation by hand" block, run as pasted into bash in a
## temporary folder with the built binary (three coordinators, three MNIST participants; a few
## seconds once MNIST is in Go's module cache); fails unless it ends with a trained model pulled.
byhand: build
	tools/byhand.sh $(BIN)/accord

clean:
	rm -rf $(BIN)

# Protobuf generators, pinned; `make proto` installs them into tools/bin.
BUF_VERSION                := v1.75.0
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1
TOOLS := $(CURDIR)/tools/bin

$(TOOLS)/buf $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-go-grpc:
	GOBIN=$(TOOLS) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

## proto: regenerate protocol/accordpb from protocol/accord/v1/*.proto.
proto: $(TOOLS)/buf $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-go-grpc
	cd protocol && PATH=$(TOOLS):$$PATH buf generate

## fuzz: every fuzz target for FUZZTIME each (default 2m), one after another.
## Seeds and what the fuzzers found are in each package's testdata/fuzz/;
## plain `go test` runs them as tests. Go 1.26's fuzzer can fail a run with
## "context deadline exceeded" as -fuzztime ends (golang/go#75804, fixed in
## Go 1.27): such a run, with no failing input written, is not a failure.
FUZZTIME ?= 2m
FUZZ_TARGETS := \
	protocol:FuzzReceiveBlob protocol:FuzzDecodeFloat32 protocol:FuzzChunks \
	protocol:FuzzAdvertisementFromWire protocol:FuzzSharesFromWire protocol:FuzzRevealsFromWire protocol:FuzzTaskParts \
	coordinator:FuzzFSMApply coordinator:FuzzJobSpec \
	cmd/accord:FuzzLoadJobFile cmd/accord:FuzzLoadPolicyFile \
	model:FuzzParseSpec model:FuzzReadSafetensors \
	scenarios:FuzzParse \
	participant/data:FuzzReadCSV participant/data:FuzzDecodeIDX participant/data:FuzzMNIST \
	participant:FuzzParsePolicy audit:FuzzVerify adminauth:FuzzFromIncoming pki:FuzzVerifySigned \
	aggregate:FuzzOptimizerState
fuzz:
	@log=$$(mktemp); trap 'rm -f $$log $$log.rc' EXIT; \
	for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; echo "== ./$$pkg $$name"; \
		{ $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -parallel 1 ./$$pkg/; echo $$? >$$log.rc; } 2>&1 | tee $$log; \
		[ "$$(cat $$log.rc)" = 0 ] && continue; \
		if grep -q 'context deadline exceeded' $$log && ! grep -q 'Failing input written' $$log; then \
			echo "== $$name: the fuzzer's end-of-run race (golang/go#75804), no failing input: not a failure"; continue; \
		fi; \
		exit 1; \
	done
