package secagg

import (
	"slices"
	"testing"
)

// TestNeighboursOfIsTheGraphsRow: a client's own neighbours, computed
// alone, are its row of the whole graph, for complete and Harary graphs.
func TestNeighboursOfIsTheGraphsRow(t *testing.T) {
	for _, c := range []struct {
		n, k int
	}{{2, 1}, {5, 4}, {10, 4}, {10, 5}, {100, 12}, {1000, 12}} {
		g := neighbours(c.n, c.k, 42)
		for u := range c.n {
			if got := neighboursOf(c.n, c.k, 42, u); !slices.Equal(got, g[u]) {
				t.Fatalf("n=%d k=%d: client %d's neighbours %v; the graph's row %v", c.n, c.k, u, got, g[u])
			}
		}
	}
}
