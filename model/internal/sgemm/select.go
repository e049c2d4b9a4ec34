package sgemm

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/gonum"
)

// EnvKernel is the environment variable that forces a kernel: gonum, avx2,
// avx512 or openblas. A kernel the binary or the CPU cannot run is refused
// with a message on standard error, and the best one runs instead.
const EnvKernel = "ACCORD_KERNEL"

// ErrUnavailable is returned by Use for a kernel this binary or this CPU
// cannot run.
var ErrUnavailable = errors.New("sgemm: kernel unavailable")

// kernel is one implementation of Sgemm.
type kernel struct {
	name string
	// why is nil when the kernel runs here, else the reason it does not.
	why error
	// impl is gonum's float32 BLAS with this kernel's Sgemm.
	impl blas.Float32
	// setThreads limits the threads of one product (nil: nothing to do).
	setThreads func(int)
}

// all lists the kernels of this binary, the preferred first: OpenBLAS when
// built in, then the assembly kernels (gemm_amd64.go), then gonum's.
var all = append(append(openblasKernels(), asmKernels()...), &kernel{name: "gonum", impl: gonum.Implementation{}})

// active is the kernel blas32 uses.
var active *kernel

func init() {
	k, err := choose(os.Getenv(EnvKernel))
	if err != nil {
		fmt.Fprintf(os.Stderr, "accord: %v; using the %s kernel\n", err, k.name)
	}
	install(k)
}

// choose returns the kernel named by want (the value of ACCORD_KERNEL), or
// the first available one when want is empty or cannot run, with an error
// that says why.
func choose(want string) (*kernel, error) {
	var best *kernel
	for _, k := range all {
		if k.why == nil {
			best = k
			break
		}
	}
	want = strings.ToLower(strings.TrimSpace(want))
	if want == "" {
		return best, nil
	}
	k, err := lookup(want)
	if err != nil {
		return best, err
	}
	return k, nil
}

func lookup(name string) (*kernel, error) {
	for _, k := range all {
		if k.name == name {
			if k.why != nil {
				return nil, fmt.Errorf("%w: %s=%s: %v", ErrUnavailable, EnvKernel, name, k.why)
			}
			return k, nil
		}
	}
	switch name {
	case "openblas":
		return nil, fmt.Errorf("%w: %s=openblas: this binary was built without -tags openblas (cgo)", ErrUnavailable, EnvKernel)
	case "avx2", "avx512":
		return nil, fmt.Errorf("%w: %s=%s: this binary has no amd64 assembly kernels (another GOARCH, or -tags purego)", ErrUnavailable, EnvKernel, name)
	}
	return nil, fmt.Errorf("%w: %s=%q is not a kernel (want gonum, avx2, avx512 or openblas)", ErrUnavailable, EnvKernel, name)
}

func install(k *kernel) {
	active = k
	if k.setThreads != nil {
		k.setThreads(threads)
	}
	blas32.Use(k.impl)
}

// Use installs the named kernel for the whole process, as ACCORD_KERNEL
// does at start-up, and returns an error wrapping ErrUnavailable (leaving
// the kernel unchanged) when it cannot run here. It must not run
// concurrently with matrix products.
func Use(name string) error {
	k, err := lookup(strings.ToLower(name))
	if err != nil {
		return err
	}
	install(k)
	return nil
}

// Available lists the kernels this binary can run on this CPU, the
// preferred first.
func Available() []string {
	var names []string
	for _, k := range all {
		if k.why == nil {
			names = append(names, k.name)
		}
	}
	return names
}

// Unavailable lists the kernels of this binary that this CPU cannot run,
// each with the reason.
func Unavailable() map[string]string {
	out := map[string]string{}
	for _, k := range all {
		if k.why != nil {
			out[k.name] = k.why.Error()
		}
	}
	return out
}
