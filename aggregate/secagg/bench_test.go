package secagg

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkMaskExpansion measures the PRG as the protocol uses it: keystream
// generated and added into a uint32 accumulator of 100,000 words, one
// core. addPRG/PATH forces each fused kernel this CPU runs (ctr_amd64.go:
// avx512, vaes256, aesni); go-ctr-then-add is keystream from Go's
// crypto/aes into a small buffer, then added (the path without a fused
// kernel); crypto-aes-ctr-keystream is Go's keystream alone and
// openssl-evp-aes-128-ctr is `openssl speed -evp aes-128-ctr -bytes 16384
// -seconds 1` (when openssl is installed), the two references. ratios/PATH
// then reports the median speed of each path over the medians of both
// references measured in the same run (x-go-keystream, x-openssl). With
// -count N, go test runs each sub-benchmark N times in a row (b.Loop calls
// its function once a run), so the medians are over N runs.
//
//	taskset -c 0 go test -run '^$' -bench MaskExpansion -cpu 1 -count 3 ./aggregate/secagg/
func BenchmarkMaskExpansion(b *testing.B) {
	const words = 100_000
	acc := make([]uint32, words)
	var seed [32]byte
	rates := map[string][]float64{} // bytes/s of each run
	measure := func(name string, f func()) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(4 * words)
			for b.Loop() {
				f()
			}
			rates[name] = append(rates[name], float64(b.N)*4*words/b.Elapsed().Seconds())
		})
	}
	saved := ctrPath
	for _, path := range ctrPaths {
		ctrPath = path
		measure("addPRG/"+path, func() { addPRG(acc, seed, +1) })
	}
	ctrPath = saved
	measure("go-ctr-then-add", func() { addPRGAtGeneric(acc, 0, [16]byte(seed[:16]), +1) })
	block, _ := aes.NewCipher(seed[:16])
	buf := make([]byte, 4*words)
	measure("crypto-aes-ctr-keystream", func() {
		var iv [16]byte
		cipher.NewCTR(block, iv[:]).XORKeyStream(buf, buf)
	})
	if _, err := exec.LookPath("openssl"); err == nil {
		b.Run("openssl-evp-aes-128-ctr", func(b *testing.B) {
			var rate float64
			for b.Loop() {
				r, err := opensslCTR()
				if err != nil {
					b.Skip(err)
				}
				rate = r
			}
			rates["openssl"] = append(rates["openssl"], rate)
			b.ReportMetric(rate/1e6, "MB/s")
		})
	}
	for _, path := range append(slices.Clone(ctrPaths), "go-ctr-then-add") {
		name := path
		if path != "go-ctr-then-add" {
			name = "addPRG/" + path
		}
		b.Run("ratios/"+path, func(b *testing.B) {
			for b.Loop() {
			}
			b.ReportMetric(median(rates[name])/median(rates["crypto-aes-ctr-keystream"]), "x-go-keystream")
			if len(rates["openssl"]) > 0 {
				b.ReportMetric(median(rates[name])/median(rates["openssl"]), "x-openssl")
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}

// median returns the median of v (0 when v is empty).
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// opensslCTR runs `openssl speed -evp aes-128-ctr` on 16 KiB blocks for a
// second (on the CPUs this process may use) and returns its bytes/s.
func opensslCTR() (float64, error) {
	out, err := exec.Command("openssl", "speed", "-evp", "aes-128-ctr", "-bytes", "16384", "-seconds", "1").Output()
	if err != nil {
		return 0, fmt.Errorf("openssl speed: %w", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && strings.EqualFold(f[0], "AES-128-CTR") && strings.HasSuffix(f[1], "k") {
			v, err := strconv.ParseFloat(strings.TrimSuffix(f[1], "k"), 64)
			if err != nil {
				return 0, err
			}
			return v * 1000, nil
		}
	}
	return 0, fmt.Errorf("openssl speed: no AES-128-CTR line in %q", out)
}

// BenchmarkRound measures client and server compute for one round: n
// clients, vectors of 100,000 entries, a dropout rate after key sharing,
// SecAgg (complete graph) and SecAgg+ (Harary graph of degree k). Every
// call is timed on the side that does the work: the clients' NewClient,
// Advertise, ShareKeys, MaskedInput and Unmask are client time; the
// server's NewServer, Receive*, Close* and Finish are server time, so
// s-client-total + s-server is the round's compute (s-round, the wall time
// of the round, differs only by the loop's bookkeeping, s-untimed). s/client
// is s-client-total over n. Both sides spread mask expansion (and the
// server its key agreements for dropped clients) over GOMAXPROCS cores.
// Every error fails the benchmark, and the first round of each run checks
// the sum the server unmasks against the survivors' inputs.
//
//	go test -run '^$' -bench 'Round/' -benchtime 1x ./aggregate/secagg/
func BenchmarkRound(b *testing.B) {
	const length = 100_000
	type config struct {
		n, k, t int
		drop    float64
	}
	var configs []config
	for _, n := range []int{100, 500, 1000} {
		// SecAgg+ with the graph chosen for 33% dropout and 5% corrupt
		// clients (Bell et al.'s example setting), and SecAgg: the complete
		// graph with a majority threshold.
		k, t, err := ChooseGraph(n, 0.33, 0.05)
		if err != nil {
			b.Fatal(err)
		}
		for _, drop := range []float64{0, 0.1, 0.3} {
			configs = append(configs, config{n, k, t, drop}, config{n, n - 1, n/2 + 1, drop})
		}
	}
	for _, c := range configs {
		if testing.Short() && c.n > 100 {
			continue
		}
		mode := "secagg+"
		if c.k >= c.n-1 {
			mode = "secagg"
		}
		b.Run(fmt.Sprintf("%s/n=%d/k=%d/t=%d/drop=%.0f%%", mode, c.n, c.k, c.t, 100*c.drop), func(b *testing.B) {
			benchmarkRound(b, Params{N: c.n, K: c.k, T: c.t, Length: length, GraphSeed: 7}, c.drop)
		})
	}
}

// benchInput fills x with client id's input in BenchmarkRound: distinct
// for every client, so a sum that leaves out, repeats or swaps a client is
// caught.
func benchInput(x []uint32, id int) []uint32 {
	for j := range x {
		x[j] = uint32(j)*0x9e3779b9 ^ uint32(id+1)*0x85ebca6b
	}
	return x
}

func benchmarkRound(b *testing.B, p Params, drop float64) {
	rng := rand.New(rand.NewPCG(1, 1))
	ids := newIdentities(p.N)
	input := make([]uint32, p.Length)
	var clientTime, serverTime, roundTime float64
	must := func(err error) {
		if err != nil {
			b.Helper()
			b.Fatal(err)
		}
	}
	// timed runs f, adds its duration to *side and returns f's error.
	timed := func(side *float64, f func() error) error {
		start := time.Now()
		err := f()
		*side += time.Since(start).Seconds()
		return err
	}
	verified := false
	for b.Loop() {
		start := time.Now()
		var srv *Server
		must(timed(&serverTime, func() (err error) { srv, err = NewServer(p); return err }))
		cs := make([]*Client, p.N)
		for i := range cs {
			benchInput(input, i)
			var a Advertisement
			must(timed(&clientTime, func() (err error) {
				if cs[i], err = NewClient(p, i, fmt.Sprint("client-", i), input, ids.signer(i), ids.verifier()); err != nil {
					return err
				}
				a, err = cs[i].Advertise()
				return err
			}))
			must(timed(&serverTime, func() error { return srv.ReceiveAdvertisement(a) }))
		}
		var ads []Advertisement
		must(timed(&serverTime, func() (err error) { ads, err = srv.CloseAdvertise(); return err }))
		for i := range cs {
			var sh []EncryptedShare
			must(timed(&clientTime, func() (err error) { sh, err = cs[i].ShareKeys(ads); return err }))
			must(timed(&serverTime, func() error { return srv.ReceiveShares(i, sh) }))
		}
		var u2 []int
		var deliver map[int][]EncryptedShare
		must(timed(&serverTime, func() (err error) { u2, deliver, err = srv.CloseShareKeys(); return err }))
		for _, i := range u2 {
			if rng.Float64() < drop {
				continue
			}
			var y []uint32
			must(timed(&clientTime, func() (err error) { y, err = cs[i].MaskedInput(deliver[i], u2); return err }))
			must(timed(&serverTime, func() error { return srv.ReceiveMaskedInput(i, y) }))
		}
		var u3 []int
		must(timed(&serverTime, func() (err error) { u3, err = srv.CloseMaskedInput(); return err }))
		for _, i := range u3 {
			var rs []Reveal
			must(timed(&clientTime, func() (err error) { rs, err = cs[i].Unmask(u3); return err }))
			must(timed(&serverTime, func() error { return srv.ReceiveReveals(i, rs) }))
		}
		var sum []uint32
		must(timed(&serverTime, func() (err error) { sum, err = srv.Finish(); return err }))
		roundTime += time.Since(start).Seconds()
		if !verified {
			verified = true
			b.StopTimer()
			checkBenchSum(b, sum, u3, p.Length)
			b.StartTimer()
		}
	}
	b.ReportMetric(clientTime/float64(p.N)/float64(b.N), "s/client")
	b.ReportMetric(clientTime/float64(b.N), "s-client-total")
	b.ReportMetric(serverTime/float64(b.N), "s-server")
	b.ReportMetric(roundTime/float64(b.N), "s-round")
	b.ReportMetric((roundTime-clientTime-serverTime)/float64(b.N), "s-untimed")
}

// checkBenchSum fails b unless sum is Σ benchInput(u) over the clients u3
// whose masked inputs the server summed, mod 2^32.
func checkBenchSum(b *testing.B, sum []uint32, u3 []int, length int) {
	b.Helper()
	want := make([]uint32, length)
	x := make([]uint32, length)
	for _, u := range u3 {
		for j, v := range benchInput(x, u) {
			want[j] += v
		}
	}
	if len(sum) != length {
		b.Fatalf("unmasked sum has %d values; want %d", len(sum), length)
	}
	for j := range want {
		if sum[j] != want[j] {
			b.Fatalf("unmasked sum of %d clients is wrong at index %d: got %#x; want %#x", len(u3), j, sum[j], want[j])
		}
	}
}
