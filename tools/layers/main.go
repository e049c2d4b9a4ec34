// Command layers checks that the module's packages keep the layering that
// coordinator/DESIGN.md draws: each package sits on a layer of the table
// under "## Packages and their arrows", and imports (test files aside)
// only packages on lower layers, so every arrow points one way. A package
// missing from the table is an error too: a new package takes its place in
// the design before it takes imports.
//
//	go run ./tools/layers coordinator/DESIGN.md   # from the module root; make check-deps runs it
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// heading introduces the table of layers in the design document.
const heading = "## Packages and their arrows"

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: layers DESIGN.md")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "layers:", err)
		os.Exit(2)
	}
	layer, err := readLayers(f)
	f.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "layers: %s: %v\n", os.Args[1], err)
		os.Exit(2)
	}
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", "./...").Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "layers: go list:", err)
		os.Exit(2)
	}
	problems := check(layer, modulePath(), bytes.NewReader(out))
	for _, p := range problems {
		fmt.Println(p)
	}
	if len(problems) > 0 {
		os.Exit(1)
	}
	fmt.Printf("layers: %d packages on %d layers, every import points down (%s)\n", len(layer), countLayers(layer), os.Args[1])
}

// modulePath is the module's import path, from go.mod.
func modulePath() string {
	out, err := exec.Command("go", "list", "-m").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// readLayers reads the table after heading: rows "| N | pkg, pkg |", the
// packages relative to the module root.
func readLayers(r io.Reader) (map[string]int, error) {
	layer := map[string]int{}
	in := false
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "## "):
			in = line == heading
			continue
		case !in || !strings.HasPrefix(line, "|"):
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) < 2 {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(cells[0]))
		if err != nil {
			continue // the header and its rule
		}
		for _, p := range strings.Split(cells[1], ",") {
			p = strings.Trim(strings.TrimSpace(p), "`")
			if p == "" {
				continue
			}
			if prev, ok := layer[p]; ok {
				return nil, fmt.Errorf("package %s is on layers %d and %d", p, prev, n)
			}
			layer[p] = n
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(layer) == 0 {
		return nil, fmt.Errorf("no table of layers under %q", heading)
	}
	return layer, nil
}

// check reads `go list` lines (a package, then its imports) and returns
// what breaks the layering: packages of the module missing from the table,
// and imports of a package on the same layer or above.
func check(layer map[string]int, module string, list io.Reader) []string {
	var problems []string
	rel := func(p string) (string, bool) {
		if p == module {
			return ".", true
		}
		r, ok := strings.CutPrefix(p, module+"/")
		return r, ok
	}
	sc := bufio.NewScanner(list)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		pkg, ok := rel(fields[0])
		if !ok || strings.HasPrefix(pkg, "tools/") {
			continue
		}
		from, known := layer[pkg]
		if !known {
			problems = append(problems, fmt.Sprintf("%s is not in the table of layers: give it a layer", pkg))
			continue
		}
		for _, imp := range fields[1:] {
			dep, ours := rel(imp)
			if !ours {
				continue
			}
			to, known := layer[dep]
			switch {
			case !known:
				problems = append(problems, fmt.Sprintf("%s imports %s, which is not in the table of layers", pkg, dep))
			case to >= from:
				problems = append(problems, fmt.Sprintf("%s (layer %d) imports %s (layer %d): an arrow may only point to a lower layer", pkg, from, dep, to))
			}
		}
	}
	return problems
}

func countLayers(layer map[string]int) int {
	seen := map[int]bool{}
	for _, n := range layer {
		seen[n] = true
	}
	return len(seen)
}
