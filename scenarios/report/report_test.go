package report

import (
	"bytes"
	"errors"
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sampleRun is a realistic international rehearsal: 30 rounds over five
// countries, a coordinator killed, a country cut off, a straggler, two
// aborted attempts, DP and six region links.
func sampleRun() *Run {
	countries := []string{"us", "de", "br", "jp", "in"}
	skill := map[string]float64{"us": 0.02, "de": 0.03, "br": -0.04, "jp": 0.01, "in": -0.06}
	r := &Run{
		Scenario:       "international",
		Description:    "Five countries on three continents; coordinators in us, de and jp.\nThe us coordinator is killed in round 8 and India is cut off for rounds 15–17.",
		Seed:           20260817,
		WallSeconds:    412.7,
		TargetAccuracy: 0.85,
		Summary: []KV{
			{"Rounds committed", "30"},
			{"Final accuracy", "89.1%"},
			{"Invariants", "ok | all FSMs equal"},
		},
		LinkBytes: map[string]uint64{
			"de→us": 412_000_000, "us→de": 398_500_000, "br→us": 251_300_000,
			"jp→us": 188_000_000, "in→de": 143_900_000, "us→jp": 97_200_000,
		},
		Comparisons: []Table{{
			Title:  "With and without the network model",
			Header: []string{"Setting", "Rounds", "Wall time (s)", "Final accuracy (%)"},
			Rows: [][]string{
				{"with network model", "30", "412.7", "89.1"},
				{"without", "30", "96.4", "89.3"},
			},
		}},
	}
	t := 0.0
	for i := 1; i <= 30; i++ {
		acc := 0.1 + 0.8/(1+math.Exp(-0.3*float64(i-8)))
		secs := 9 + 2*math.Sin(float64(i))
		switch i {
		case 8:
			secs += 11 // election after the kill
		case 15:
			secs += 7
		case 22:
			secs += 14 // straggler
		}
		t += secs
		rd := Round{
			Round: uint32(i), Accuracy: acc, Seconds: secs, SecondsSinceStart: t, Cohort: 50,
			ByRegion: map[string]float64{}, ContributorsByRegion: map[string]int{},
			Epsilon: 0.35 * math.Sqrt(float64(i)),
		}
		for j, c := range countries {
			a := acc + skill[c]
			n := 10 - j%3
			if c == "in" && i >= 15 && i <= 17 {
				a -= 0.05
				n = 0
			}
			rd.ByRegion[c] = math.Min(1, a)
			rd.ContributorsByRegion[c] = n
		}
		r.Rounds = append(r.Rounds, rd)
	}
	r.Aborted = []Aborted{
		{Round: 8, Attempt: 1, Reason: "leader lost during share_keys", SecondsSinceStart: 70.2},
		{Round: 15, Attempt: 1, Reason: "too few survivors: 38 < 40", SecondsSinceStart: 151.9, Cohort: 50, Responders: 38, Seconds: 60},
	}
	r.Attempts = []Attempt{
		{Round: 14, Attempt: 1, Committed: true, Reason: "the 40 updates wanted arrived (50 selected)", Cohort: 50, Responders: 40, Seconds: 8.25},
		{Round: 15, Attempt: 1, Reason: "too few survivors: 38 < 40", Cohort: 50, Responders: 38, Seconds: 60, AtDeadline: true},
	}
	r.Events = []Event{
		{Round: 8, Phase: "share_keys", Kind: "kill_coordinator", Target: "coord-us", SecondsSinceStart: 69.8,
			Outcome: "coord-us killed; new leader coord-de after 3.2s"},
		{Round: 15, Phase: "training", Kind: "partition", Target: "in", SecondsSinceStart: 150.4,
			Outcome: "in cut off | healed at round 18"},
		{Round: 22, Phase: "training", Kind: "straggler", Target: "jp", SecondsSinceStart: 231.0,
			Outcome: "jp 14 s late; round waited"},
	}
	return r
}

func TestWriteFullRun(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, sampleRun()); err != nil {
		t.Fatalf("Write: %v", err)
	}
	for _, name := range []string{AccuracyFile, DurationFile, LinkBytesFile, ContributorsFile, EpsilonFile} {
		checkPNG(t, filepath.Join(dir, name))
	}
	md := readFile(t, filepath.Join(dir, MarkdownFile))
	for _, want := range []string{
		"# Scenario report: international\n",
		"| Item | Value |",
		"| Seed | 20260817 |",
		"| Invariants | ok \\| all FSMs equal |",
		"## Timeline",
		"| Round | Phase | Kind | Target | t (s) | Outcome |",
		"| 8 | `share_keys` | `kill_coordinator` | `coord-us` | 69.8 | coord-us killed; new leader coord-de after 3.2s |",
		"in cut off \\| healed at round 18",
		"## Aborted attempts",
		"- Round 8, attempt 1, at t = 70.2 s: leader lost during share\\_keys",
		"- Round 15, attempt 1, at t = 151.9 s (38 of 50 answered, after 60.0 s): too few survivors: 38 &lt; 40",
		"| Round | Attempt | Status | Cohort | Responders | Seconds | At deadline | Closed because |",
		"| 14 | 1 | committed | 50 | 40 | 8.25 |  | the 40 updates wanted arrived (50 selected) |",
		"| 15 | 1 | aborted | 50 | 38 | 60.00 | yes | too few survivors: 38 &lt; 40 |",
		"### With and without the network model",
		"| Setting | Rounds | Wall time (s) | Final accuracy (%) |",
		"![Test accuracy per round](accuracy.png)",
		"![Round duration](round-duration.png)",
		"![Bytes per region link](link-bytes.png)",
		"![Contributors per round by country](contributors.png)",
		"![Differential privacy ε per round](epsilon.png)",
		"| `de→us` | 412.00 | 412000000 |",
		"| Round | Accuracy (%) | br (%) | de (%) | in (%) | jp (%) | us (%) | Since previous commit (s) | Committed at t (s) | Cohort | Contributors | ε |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	// Every figure has a one-sentence caption in italics under it.
	for _, name := range []string{AccuracyFile, DurationFile, LinkBytesFile, ContributorsFile, EpsilonFile} {
		i := strings.Index(md, "]("+name+")")
		if i < 0 {
			continue
		}
		rest := md[i:]
		if !strings.Contains(rest, ")\n\n*") {
			t.Errorf("%s: no caption after the image", name)
		}
	}
	// Every table row has as many cells as its header.
	checkTables(t, md)
}

func TestWriteNoRounds(t *testing.T) {
	dir := t.TempDir()
	r := &Run{Scenario: "empty", Description: "Nothing was committed."}
	if err := Write(dir, r); err != nil {
		t.Fatalf("Write: %v", err)
	}
	md := readFile(t, filepath.Join(dir, MarkdownFile))
	for _, want := range []string{"No rounds were committed", "No network model was used", "No timeline events", "No attempt was aborted"} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("files: got %v; want only %s", names, MarkdownFile)
	}
}

func TestWriteUnwritableDir(t *testing.T) {
	// A folder under a regular file cannot be created, even by root.
	file := filepath.Join(t.TempDir(), "not-a-folder")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(file, "report")
	err := Write(dir, sampleRun())
	if err == nil {
		t.Fatalf("Write(%s): got nil error; want one", dir)
	}
	if !strings.Contains(err.Error(), dir) {
		t.Errorf("error %q does not name %s", err, dir)
	}
}

func TestWriteNilRun(t *testing.T) {
	if err := Write(t.TempDir(), nil); !errors.Is(err, ErrNilRun) {
		t.Errorf("got %v; want ErrNilRun", err)
	}
}

func TestWriteRemovesStalePlots(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, sampleRun()); err != nil {
		t.Fatal(err)
	}
	r := sampleRun()
	r.LinkBytes = nil
	for i := range r.Rounds {
		r.Rounds[i].Epsilon = 0
	}
	if err := Write(dir, r); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{LinkBytesFile, EpsilonFile} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: got %v; want it removed", name, err)
		}
	}
	md := readFile(t, filepath.Join(dir, MarkdownFile))
	for _, want := range []string{"No network model was used", "no ε plot"} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	if strings.Contains(md, "| ε |") {
		t.Error("per-round table has an ε column without DP")
	}
}

func TestWriteIsDeterministic(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	if err := Write(a, sampleRun()); err != nil {
		t.Fatal(err)
	}
	if err := Write(b, sampleRun()); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{MarkdownFile, AccuracyFile, DurationFile, LinkBytesFile, ContributorsFile, EpsilonFile} {
		x, y := readFile(t, filepath.Join(a, name)), readFile(t, filepath.Join(b, name))
		if x != y {
			t.Errorf("%s differs between two writes of the same run", name)
		}
	}
}

// TestWriteOddRuns feeds Write runs a careless runner might produce; each
// must give a report without panicking.
func TestWriteOddRuns(t *testing.T) {
	many := sampleRun()
	many.LinkBytes = map[string]uint64{}
	for i := range 12 {
		c := fmt.Sprintf("c%02d", i)
		for j := range many.Rounds {
			many.Rounds[j].ByRegion[c] = 0.5
			many.Rounds[j].ContributorsByRegion[c] = 2
		}
		many.LinkBytes[c+"→us"] = uint64(1000 * (i + 1))
	}
	nan := sampleRun()
	nan.Rounds[3].Accuracy = math.NaN()
	nan.Rounds[4].Seconds = math.Inf(1)
	nan.Rounds[5].ByRegion["de"] = math.NaN()
	nan.Rounds[6].Epsilon = math.NaN()
	crowded := sampleRun()
	for i := range 12 {
		crowded.Events = append(crowded.Events, Event{Round: uint32(10 + i%3), Kind: "dropout", Target: fmt.Sprintf("participant-%d-with-a-long-name", i)})
	}
	tests := []struct {
		name string
		run  *Run
	}{
		{"one round", &Run{Scenario: "one", Rounds: []Round{{Round: 1, Accuracy: 0.4, Seconds: 3, ByRegion: map[string]float64{"fr": 0.4}}}}},
		{"no region data", &Run{Scenario: "flat", Rounds: []Round{{Round: 1, Accuracy: 0.4, Seconds: 3}, {Round: 2, Accuracy: 0.5, Seconds: 4}}}},
		{"aborted only", &Run{Scenario: "stuck", Aborted: []Aborted{{Round: 1, Attempt: 1, Reason: "no quorum"}}}},
		{"twelve countries, twelve links", many},
		{"non-finite values", nan},
		{"crowded events", crowded},
		{"event outside the rounds", &Run{Scenario: "late", Rounds: sampleRun().Rounds, Events: []Event{{Round: 45, Kind: "kill_coordinator", Target: "coord-jp"}}}},
		{"ragged comparison", &Run{Scenario: "ragged", Comparisons: []Table{{Title: "t", Header: []string{"a"}, Rows: [][]string{{"1", "2", "3"}, {}}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := Write(dir, tt.run); err != nil {
				t.Fatalf("Write: %v", err)
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if strings.HasSuffix(e.Name(), ".png") {
					checkPNG(t, filepath.Join(dir, e.Name()))
				}
			}
			checkTables(t, readFile(t, filepath.Join(dir, MarkdownFile)))
		})
	}
}

func TestEscape(t *testing.T) {
	tests := []struct {
		name, in, esc, code string
	}{
		{"plain", "coord-us", "coord-us", "`coord-us`"},
		{"pipe", "a|b", `a\|b`, "`a\\|b`"},
		{"underscore", "share_keys", `share\_keys`, "`share_keys`"},
		{"newline", "one\ntwo", "one two", "`one two`"},
		{"markup", "*x* [y] <z>", `\*x\* \[y\] &lt;z&gt;`, "`*x* [y] <z>`"},
		{"backtick", "a`b", "a\\`b", "`` a`b ``"},
		{"empty", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := esc(tt.in); got != tt.esc {
				t.Errorf("esc(%q) = %q; want %q", tt.in, got, tt.esc)
			}
			if got := code(tt.in); got != tt.code {
				t.Errorf("code(%q) = %q; want %q", tt.in, got, tt.code)
			}
		})
	}
}

func TestEventLabel(t *testing.T) {
	tests := []struct {
		e    Event
		want string
	}{
		{Event{Kind: "kill_coordinator", Target: "coord-us"}, "kill coord-us"},
		{Event{Kind: "partition", Target: "in"}, "partition in"},
		{Event{Kind: "hostile"}, "hostile"},
		{Event{Kind: "straggler", Target: "participant-with-a-very-long-name"}, "straggler participant-wit…"},
	}
	for _, tt := range tests {
		if got := eventLabel(tt.e); got != tt.want {
			t.Errorf("eventLabel(%+v) = %q; want %q", tt.e, got, tt.want)
		}
	}
}

// checkPNG checks that path is a PNG of the figure size.
func checkPNG(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Errorf("%s: decode: %v", path, err)
		return
	}
	if got := img.Bounds().Size(); got.X != FigureWidthPx || got.Y != FigureHeightPx {
		t.Errorf("%s: size %v; want %dx%d", filepath.Base(path), got, FigureWidthPx, FigureHeightPx)
	}
}

// checkTables checks that each table row of md has as many unescaped pipes
// as the table's header row.
func checkTables(t *testing.T, md string) {
	t.Helper()
	want := -1
	for _, line := range strings.Split(md, "\n") {
		if !strings.HasPrefix(line, "|") {
			want = -1
			continue
		}
		n := strings.Count(line, "|") - strings.Count(line, `\|`)
		if want < 0 {
			want = n
			continue
		}
		if n != want {
			t.Errorf("table row has %d cell borders; header has %d: %s", n, want, line)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
