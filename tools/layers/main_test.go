package main

import (
	"slices"
	"strings"
	"testing"
)

const design = "# notes\n\n## Packages and their arrows\n\n| layer | packages |\n|---|---|\n" +
	"| 0 | `pki`, `model` |\n| 1 | `store` |\n| 2 | `coordinator`, `coordinator/sub` |\n\n## Other\n\n| 9 | `ignored` |\n"

// TestCheck reads a table and a `go list` and names every import that
// does not point down and every package the table lacks.
func TestCheck(t *testing.T) {
	layer, err := readLayers(strings.NewReader(design))
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"pki": 0, "model": 0, "store": 1, "coordinator": 2, "coordinator/sub": 2}; len(layer) != len(want) || layer["coordinator/sub"] != 2 || layer["ignored"] != 0 {
		t.Fatalf("layers %v; want %v", layer, want)
	}
	const m = "example.org/m"
	for _, c := range []struct {
		name, list string
		want       []string
	}{
		{"downward arrows", m + "/coordinator " + m + "/store " + m + "/pki fmt\n" + m + "/store " + m + "/pki\n", nil},
		{"an arrow up", m + "/store " + m + "/coordinator\n", []string{"store (layer 1) imports coordinator (layer 2): an arrow may only point to a lower layer"}},
		{"an arrow sideways", m + "/coordinator " + m + "/coordinator/sub\n", []string{"coordinator (layer 2) imports coordinator/sub (layer 2): an arrow may only point to a lower layer"}},
		{"a package without a layer", m + "/serve " + m + "/pki\n", []string{"serve is not in the table of layers: give it a layer"}},
		{"an import without a layer", m + "/coordinator " + m + "/serve\n", []string{"coordinator imports serve, which is not in the table of layers"}},
		{"tools are not layered", m + "/tools/x " + m + "/coordinator\n", nil},
	} {
		if got := check(layer, m, strings.NewReader(c.list)); !slices.Equal(got, c.want) {
			t.Errorf("%s: %q; want %q", c.name, got, c.want)
		}
	}
	if _, err := readLayers(strings.NewReader("| 0 | pki |\n| 1 | pki |\n")); err == nil {
		t.Error("a table without its heading was read")
	}
	if _, err := readLayers(strings.NewReader("## Packages and their arrows\n| 0 | pki |\n| 1 | pki |\n")); err == nil {
		t.Error("a package on two layers was accepted")
	}
}
