// Command testsummary reads `go test -json` on its standard input and
// prints what `go test` would (each package's ok, FAIL or no-test-files
// line, and the output of every failing test), then the tests that were
// skipped, grouped by the reason they gave. It exits 1 if a test or a build
// failed, 2 if its input holds no package result at all.
//
//	go test -race -json ./... | go run ./tools/testsummary
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// event is one line of `go test -json` (see `go doc test2json`).
type event struct {
	Action     string
	Package    string
	Test       string
	Output     string
	ImportPath string
}

func main() {
	failed, err := summarize(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}

// summarize copies the package results and failures from r to w, then the
// skipped tests by reason; failed reports whether anything failed.
func summarize(r io.Reader, w io.Writer) (failed bool, err error) {
	type key struct{ pkg, test string }
	outputs := map[key][]string{}
	skipped := map[string][]string{} // reason → "pkg Test"
	var reasons []string
	packages := 0
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if json.Unmarshal(line, &e) != nil || e.Action == "" {
			fmt.Fprintln(w, string(line)) // not from test2json: a go command error
			failed = true
			continue
		}
		k := key{e.Package, e.Test}
		if e.Test == "" && (e.Action == "pass" || e.Action == "fail" || e.Action == "skip") {
			packages++
		}
		switch e.Action {
		case "build-output":
			fmt.Fprint(w, e.Output)
		case "build-fail":
			failed = true
		case "output":
			if e.Test == "" {
				if s := strings.TrimSpace(e.Output); s != "PASS" && s != "FAIL" && !strings.HasPrefix(s, "=== ") && !strings.HasPrefix(s, "--- ") {
					fmt.Fprint(w, e.Output)
				}
				continue
			}
			outputs[k] = append(outputs[k], e.Output)
		case "fail":
			failed = true
			if e.Test != "" {
				fmt.Fprint(w, strings.Join(outputs[k], ""))
			}
			delete(outputs, k)
		case "skip":
			if e.Test != "" {
				r := skipReason(outputs[k])
				if _, ok := skipped[r]; !ok {
					reasons = append(reasons, r)
				}
				skipped[r] = append(skipped[r], strings.TrimPrefix(e.Package, "github.com/accord-fl/accord/")+" "+e.Test)
			}
			delete(outputs, k)
		case "pass":
			delete(outputs, k)
		}
	}
	if err := sc.Err(); err != nil {
		return true, err
	}
	if packages == 0 {
		return true, fmt.Errorf("no package results on the standard input (did go test fail to start?)")
	}
	n := 0
	for _, r := range reasons {
		n += len(skipped[r])
	}
	if n > 0 {
		fmt.Fprintf(w, "skipped: %d tests\n", n)
		for _, r := range reasons {
			tests := skipped[r]
			slices.Sort(tests)
			fmt.Fprintf(w, "  %s\n    %s\n", r, strings.Join(tests, ", "))
		}
	}
	return failed, nil
}

// skipReason is the message a skipped test gave: its last log entry (with
// -json, go test streams a test's log before its "--- SKIP" line; in plain
// mode, after it), without the file:line prefix, on one line, shortened.
func skipReason(out []string) string {
	var entries [][]string
	for _, l := range out {
		s := strings.TrimSpace(l)
		switch {
		case s == "" || strings.HasPrefix(s, "=== ") || strings.HasPrefix(s, "--- "):
		case strings.HasPrefix(l, "    ") && !strings.HasPrefix(l, "        ") && fileLine(s) > 0:
			entries = append(entries, []string{s[fileLine(s)+2:]})
		case len(entries) > 0: // a continuation line of the last entry
			entries[len(entries)-1] = append(entries[len(entries)-1], s)
		}
	}
	if len(entries) == 0 {
		return "(no reason given)"
	}
	r := strings.Join(entries[len(entries)-1], " ")
	if len(r) > 300 {
		r = r[:297] + "..."
	}
	return r
}

// fileLine returns the index of the ": " that ends s's "file.go:12" prefix,
// or -1.
func fileLine(s string) int {
	i := strings.Index(s, ": ")
	if i < 0 || !strings.Contains(s[:i], ".go:") || strings.ContainsAny(s[:i], " \t") {
		return -1
	}
	return i
}
