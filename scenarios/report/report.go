package report

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
)

// Errors returned by Write.
var (
	// ErrNilRun is returned when Write is given no Run.
	ErrNilRun = errors.New("report: nil run")
)

// File names Write uses in the report folder.
const (
	MarkdownFile     = "report.md"
	AccuracyFile     = "accuracy.png"
	DurationFile     = "round-duration.png"
	LinkBytesFile    = "link-bytes.png"
	ContributorsFile = "contributors.png"
	EpsilonFile      = "epsilon.png"
)

const (
	fileMode   = 0o644
	folderMode = 0o755

	maxLinksPlotted   = 16 // more links than this: the plot shows the busiest, the table all
	maxLabelRunes     = 26 // event labels longer than this are cut with an ellipsis
	maxLegendRunes    = 22 // legend names longer than this are cut with an ellipsis
	maxEventLabelRows = 3  // rows of event labels above a plot; labels that do not fit are left out
)

// Run is what a scenario run produced, as the report shows it.
type Run struct {
	Scenario    string
	Description string
	Seed        uint64
	WallSeconds float64
	// Summary lines shown as a table at the top: ordered key/value pairs, e.g. {"Rounds committed", "40"}.
	Summary        []KV
	TargetAccuracy float64   // 0: none
	Rounds         []Round   // committed rounds, in order
	Aborted        []Aborted // aborted attempts
	Attempts       []Attempt // every attempt, committed or aborted
	Events         []Event   // the timeline's events with outcomes
	// LinkBytes is bytes carried per region link, keyed "from→to" (e.g. "de→us"); nil/empty: no network model (the plot is skipped and the md says so).
	LinkBytes map[string]uint64
	// Comparisons are optional extra tables (e.g. "with network model" vs "without"): each a title, column headers and rows.
	Comparisons []Table
}

// KV is one line of the summary table.
type KV struct{ Key, Value string }

// Table is an extra table shown in the report under its title. Rows shorter
// than Header are padded with empty cells.
type Table struct {
	Title  string
	Header []string
	Rows   [][]string
}

// Round is one committed round.
type Round struct {
	Round                uint32
	Accuracy             float64            // overall test accuracy in [0,1]
	ByRegion             map[string]float64 // accuracy on each country's own validation data (may be nil)
	Seconds              float64            // round duration: since the previous commit (the first round: since its opening), retries included
	SecondsSinceStart    float64            // wall seconds since the run began, at commit
	Cohort               int
	ContributorsByRegion map[string]int // contributors per country
	Epsilon              float64        // DP ε after the round (0: no DP)
}

// Aborted is one aborted attempt at a round.
type Aborted struct {
	Round, Attempt    uint32
	Reason            string
	SecondsSinceStart float64
	// Cohort and Responders are how many were selected and answered;
	// Seconds how long the attempt ran (0: not known).
	Cohort, Responders int
	Seconds            float64
}

// Attempt is one attempt at a round, committed or aborted.
type Attempt struct {
	Round, Attempt     uint32
	Committed          bool
	Reason             string // why it closed when it did, or aborted
	Cohort, Responders int
	Seconds            float64 // from opening to closing
	AtDeadline         bool    // it closed only at its deadline
}

// Event is one event of the scenario's timeline and what came of it.
type Event struct {
	Round             uint32 // the round it was tied to
	Phase             string // e.g. "open", "training", "share_keys", "commit"
	Kind              string // e.g. "kill_coordinator", "partition", "dropout", "hostile", "straggler"
	Target            string // coordinator name, region, ...
	SecondsSinceStart float64
	Outcome           string // what happened, e.g. "coord-us killed; new leader coord-eu after 3.2s"
}

// figureFile is one plot of the report: the PNG's name, its alt text and a
// caption for report.md.
type figureFile struct {
	name, alt, caption string
}

// Write writes report.md and the plots for r into dir, creating dir if
// needed. Plots that r has no data for are not drawn and report.md says why;
// a plot file of the same name left in dir by an earlier run is removed. An
// error names the file or folder it concerns.
func Write(dir string, r *Run) error {
	if r == nil {
		return ErrNilRun
	}
	if err := os.MkdirAll(dir, folderMode); err != nil {
		return fmt.Errorf("report: create folder %s: %w", dir, err)
	}
	countries := countriesOf(r)
	drawers := []struct {
		name string
		draw func(*Run, []string) (*figure, figureFile, bool)
	}{
		{AccuracyFile, accuracyFigure},
		{DurationFile, durationFigure},
		{LinkBytesFile, linkBytesFigure},
		{ContributorsFile, contributorsFigure},
		{EpsilonFile, epsilonFigure},
	}
	drawn := map[string]figureFile{}
	for _, d := range drawers {
		path := filepath.Join(dir, d.name)
		f, ff, ok := d.draw(r, countries)
		if !ok {
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("report: remove stale %s: %w", path, err)
			}
			continue
		}
		png, err := f.render()
		if err != nil {
			return fmt.Errorf("report: draw %s: %w", path, err)
		}
		if err := os.WriteFile(path, png, fileMode); err != nil {
			return fmt.Errorf("report: write %s: %w", path, err)
		}
		drawn[d.name] = ff
	}
	path := filepath.Join(dir, MarkdownFile)
	if err := os.WriteFile(path, markdown(r, countries, drawn), fileMode); err != nil {
		return fmt.Errorf("report: write %s: %w", path, err)
	}
	return nil
}

// countriesOf returns every country named in r's rounds, sorted by name.
func countriesOf(r *Run) []string {
	seen := map[string]bool{}
	for _, rd := range r.Rounds {
		for c := range rd.ByRegion {
			seen[c] = true
		}
		for c := range rd.ContributorsByRegion {
			seen[c] = true
		}
	}
	out := make([]string, 0, len(seen))
	for c := range seen {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// hasEpsilon reports whether any round ran with differential privacy.
func hasEpsilon(r *Run) bool {
	for _, rd := range r.Rounds {
		if rd.Epsilon > 0 && finite(rd.Epsilon) {
			return true
		}
	}
	return false
}

// hasContributors reports whether any round counted contributors per country.
func hasContributors(r *Run) bool {
	for _, rd := range r.Rounds {
		if len(rd.ContributorsByRegion) > 0 {
			return true
		}
	}
	return false
}

// contributors returns the number of contributors in rd, all countries
// together, and whether rd counted any.
func contributors(rd Round) (int, bool) {
	n := 0
	for _, c := range rd.ContributorsByRegion {
		n += c
	}
	return n, len(rd.ContributorsByRegion) > 0
}

// link is the traffic over one region link.
type link struct {
	name  string
	bytes uint64
}

// linksByBytes returns r's links, busiest first, ties by name.
func linksByBytes(r *Run) []link {
	out := make([]link, 0, len(r.LinkBytes))
	for name, b := range r.LinkBytes {
		out = append(out, link{name, b})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].bytes != out[j].bytes {
			return out[i].bytes > out[j].bytes
		}
		return out[i].name < out[j].name
	})
	return out
}

// byteUnit picks the decimal unit that shows max bytes with one to three
// digits before the point: its name and its size in bytes.
func byteUnit(max uint64) (string, float64) {
	switch {
	case max >= 1e9:
		return "GB", 1e9
	case max >= 1e6:
		return "MB", 1e6
	default:
		return "kB", 1e3
	}
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
