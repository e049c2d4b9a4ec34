package secagg

import (
	"crypto/rand"
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
		got, err := combineShares(sub, 4)
		if err != nil || got != secret {
			t.Fatalf("shares %v rebuilt %x, %v; want %x", pick, got, err, secret)
		}
	}
	if _, err := combineShares(shares[:3], 4); err == nil {
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
