package secagg

import (
	"crypto/rand"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestShamirRebuildsFromAnyT(t *testing.T) {
	var secret [32]byte
	rand.Read(secret[:])
	xs := []uint32{1, 2, 3, 4, 5, 6, 7}
	shares, err := splitSecret(secret, 4, xs)
	if err != nil {
		t.Fatal(err)
	}
	for _, pick := range [][]int{{0, 1, 2, 3}, {6, 4, 2, 0}, {3, 4, 5, 6}} {
		var sub []Share
		for _, i := range pick {
			sub = append(sub, shares[i])
		}
		got, err := new(lagrangeCache).combine(sub, 4)
		if err != nil || got != secret {
			t.Fatalf("shares %v rebuilt %x, %v; want %x", pick, got, err, secret)
		}
	}
	if _, err := new(lagrangeCache).combine(shares[:3], 4); err == nil {
		t.Error("3 shares rebuilt a 4-threshold secret")
	}
}

func TestPRGCancels(t *testing.T) {
	var seed [32]byte
	rand.Read(seed[:])
	acc := make([]uint32, 5000)
	addPRG(acc, seed, +1)
	if acc[0] == 0 && acc[1] == 0 {
		t.Fatal("mask is zero")
	}
	addPRG(acc, seed, -1)
	for i, v := range acc {
		if v != 0 {
			t.Fatalf("word %d is %d after adding and removing the mask", i, v)
		}
	}
}

func TestHararyGraph(t *testing.T) {
	for _, c := range []struct{ n, k int }{{10, 4}, {50, 8}, {7, 6}, {100, 99}} {
		g := neighbours(c.n, c.k, 3)
		for u, ns := range g {
			want := min(c.k, c.n-1)
			if len(ns) != want {
				t.Fatalf("n=%d k=%d: client %d has %d neighbours; want %d", c.n, c.k, u, len(ns), want)
			}
			for _, v := range ns {
				if v == u {
					t.Fatalf("client %d is its own neighbour", u)
				}
				found := false
				for _, w := range g[v] {
					found = found || w == u
				}
				if !found {
					t.Fatalf("edge %d→%d is not symmetric", u, v)
				}
			}
		}
	}
}

// The vector add and subtract agree with plain Go for every length,
// including tails that are not a multiple of the vector width.
func TestAddWordsMatchesGeneric(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(5, 5))
	for _, n := range []int{0, 1, 31, 32, 33, 64, 100, 1023, 1024, 1029} {
		for _, sign := range []int{+1, -1} {
			ks := make([]byte, 4*n)
			for i := range ks {
				ks[i] = byte(rng.Uint32())
			}
			want := make([]uint32, n)
			for i := range want {
				want[i] = rng.Uint32()
			}
			got := slices.Clone(want)
			addWordsGeneric(want, ks, sign)
			addWords(got, ks, sign)
			if !slices.Equal(got, want) {
				t.Fatalf("n=%d sign=%d: vector result differs from plain Go", n, sign)
			}
			src := make([]uint32, n)
			for i := range src {
				src[i] = rng.Uint32()
			}
			want2 := slices.Clone(got)
			for i := range want2 {
				want2[i] += src[i]
			}
			addVector(got, src)
			if !slices.Equal(got, want2) {
				t.Fatalf("n=%d: addVector differs from plain Go", n)
			}
		}
	}
}

// Expanding a mask in slices from any block offset, and over the cores,
// gives the same vector as expanding it whole.
func TestMasksSplitOverCoresMatchWhole(t *testing.T) {
	var seeds [3][32]byte
	for i := range seeds {
		rand.Read(seeds[i][:])
	}
	const n = 3*parallelWords + 37
	want := make([]uint32, n)
	for i, s := range seeds {
		addPRG(want, s, 1-2*(i%2))
	}
	got := make([]uint32, n)
	addMasks(got, []mask{{seeds[0], +1}, {seeds[1], -1}, {seeds[2], +1}})
	if !slices.Equal(got, want) {
		t.Fatal("masks added over the cores differ from masks added whole")
	}
	part := make([]uint32, 100)
	addPRGAt(part, 1000, seeds[0], +1)
	whole := make([]uint32, 1100)
	addPRG(whole, seeds[0], +1)
	if !slices.Equal(part, whole[1000:]) {
		t.Fatal("a mask expanded from offset 1000 differs from the whole mask's words 1000…")
	}
}

// Every fused kernel this CPU runs (forced one after another) gives
// AES-128-CTR exactly as crypto/aes computes it, from any starting block
// (including the last before the low 32 bits carry) and for any length (the
// tail falls back to Go's CTR), added and subtracted, into accumulators
// that already hold data and start at unaligned addresses.
func TestFusedCTRMatchesCryptoAES(t *testing.T) {
	if len(ctrPaths) == 0 {
		t.Skip("no fused AES kernel here (no AES-NI, another GOARCH, or -tags purego): Go's CTR is the only path")
	}
	saved := ctrPath
	defer func() { ctrPath = saved }()
	var seed [32]byte
	rand.Read(seed[:])
	key := prgKey(seed)
	rng := mrand.New(mrand.NewPCG(7, 7))
	for _, path := range ctrPaths {
		ctrPath = path
		t.Run(path, func(t *testing.T) {
			for _, c := range []struct{ offset, n int }{{0, 32}, {0, 64}, {0, 1000}, {4, 640}, {4096, 77}, {4, 31}, {8, 95}, {1 << 20, 12345}, {4 * (1<<32 - 8), 256}, {4 * (1<<32 - 3), 4099}} {
				for _, skip := range []int{0, 1, 3} {
					base := make([]uint32, c.n+skip)
					for i := range base {
						base[i] = rng.Uint32()
					}
					want := slices.Clone(base[skip:])
					addPRGAtGeneric(want, c.offset, key, +1)
					got := slices.Clone(base)[skip:]
					addPRGAt(got, c.offset, seed, +1)
					if !slices.Equal(got, want) {
						t.Fatalf("offset %d, %d words, skip %d: fused keystream differs from crypto/aes's", c.offset, c.n, skip)
					}
					addPRGAt(got, c.offset, seed, -1)
					if !slices.Equal(got, base[skip:]) {
						t.Fatalf("offset %d, %d words, skip %d: subtracting the mask does not cancel adding it", c.offset, c.n, skip)
					}
				}
			}
		})
	}
}

// TestKernelList reports which mask-expansion paths this machine tested
// (make test-kernels prints it).
func TestKernelList(t *testing.T) {
	t.Logf("secagg fused AES-CTR paths tested here: %s (and Go's CTR then add)", strings.Join(ctrPaths, ", "))
	if !slices.Contains(ctrPaths, ctrVAES256) {
		t.Logf("secagg path not tested here: vaes256 (needs AVX2 and VAES)")
	}
	if !slices.Contains(ctrPaths, ctrAVX512) {
		t.Logf("secagg path not tested here: avx512 (needs AVX-512F/BW and VAES)")
	}
}
