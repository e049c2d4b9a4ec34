package state

import (
	"fmt"
	"slices"
	"strings"

	"github.com/accord-fl/accord/model"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// Participants register the datasets they hold with each one's features
// and classes (replicated with the participant). A job that no registered
// participant could train is then refused when it is submitted: its
// dataset is held by nobody, or its model takes inputs or classes that no
// holder's data has. The coordinators only refuse what they know: with
// nobody registered yet, or a registered participant that declared no
// datasets or a holder that declared no shape (an older daemon), the job is
// accepted and its rounds find out (participants then report why they
// cannot train it, see failures.go).

// maxDatasets bounds the datasets a participant may register, and
// maxDatasetName the length of each name.
const (
	MaxDatasets    = 64
	maxDatasetName = 128
)

// DatasetsFromRegister merges a registration's dataset names and shapes:
// every name, with its declared shape when there is one.
func DatasetsFromRegister(names []string, holdings []*pb.DatasetShape) ([]DatasetShape, error) {
	if len(names) > MaxDatasets || len(holdings) > MaxDatasets {
		return nil, fmt.Errorf("%w: more than %d datasets", ErrBadUpdate, MaxDatasets)
	}
	var out []DatasetShape
	add := func(d DatasetShape) error {
		if d.Name == "" || len(d.Name) > maxDatasetName || SanitizeReason(d.Name) != d.Name {
			return fmt.Errorf("%w: dataset name %.40q: want 1–%d printable characters", ErrBadUpdate, d.Name, maxDatasetName)
		}
		i := slices.IndexFunc(out, func(o DatasetShape) bool { return o.Name == d.Name })
		switch {
		case i < 0:
			out = append(out, d)
		case d.Features > 0 || d.Classes > 0:
			out[i] = d
		}
		return nil
	}
	for _, n := range names {
		if err := add(DatasetShape{Name: n}); err != nil {
			return nil, err
		}
	}
	for _, h := range holdings {
		if err := add(DatasetShape{Name: h.GetName(), Features: h.GetFeatures(), Classes: h.GetClasses()}); err != nil {
			return nil, err
		}
	}
	if len(out) > MaxDatasets {
		return nil, fmt.Errorf("%w: more than %d datasets", ErrBadUpdate, MaxDatasets)
	}
	return out, nil
}

// Untrainable says why no registered participant could train a job with
// spec, or "" when one could or the coordinators cannot tell. noHolder is
// set when nobody holds the job's dataset at all.
func Untrainable(spec JobSpec, ps []*Participant) (why string, noHolder bool) {
	if len(ps) == 0 {
		return "", false
	}
	var holders []DatasetShape
	for _, p := range ps {
		if len(p.Datasets) == 0 {
			return "", false // it declared nothing: it may hold anything
		}
		for _, d := range p.Datasets {
			if d.Name == spec.Dataset {
				holders = append(holders, d)
			}
		}
	}
	if len(holders) == 0 {
		return fmt.Sprintf("dataset %s: no registered participant holds it (%s)", spec.Dataset, holdings(ps)), true
	}
	ms, err := model.ParseSpec(spec.Model)
	if err != nil {
		return "", false // Validate names it
	}
	for _, h := range holders {
		if h.Features == 0 || h.Classes == 0 || (int(h.Features) == ms.Inputs() && int(h.Classes) == ms.Classes()) {
			return "", false
		}
	}
	return fmt.Sprintf("model %s takes %d features and %d classes, but no registered participant holds %s data of that shape (%s)",
		spec.Model, ms.Inputs(), ms.Classes(), spec.Dataset, holdings(ps)), false
}

// holdings describes what the participants hold, grouped by dataset and
// shape: "they hold mnist with 784 features and 10 classes: site-1, site-2".
func holdings(ps []*Participant) string {
	type key struct {
		name              string
		features, classes uint32
	}
	who := map[key][]string{}
	for _, p := range ps {
		for _, d := range p.Datasets {
			k := key{d.Name, d.Features, d.Classes}
			who[k] = append(who[k], p.ID)
		}
	}
	keys := make([]key, 0, len(who))
	for k := range who {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int {
		if c := len(who[b]) - len(who[a]); c != 0 {
			return c
		}
		return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
	})
	var parts []string
	for i, k := range keys {
		if i == 4 {
			parts = append(parts, fmt.Sprintf("%d more", len(keys)-4))
			break
		}
		ids := who[k]
		slices.Sort(ids)
		names := strings.Join(ids[:min(3, len(ids))], ", ")
		if len(ids) > 3 {
			names += fmt.Sprintf(" and %d more", len(ids)-3)
		}
		shape := ""
		if k.features > 0 && k.classes > 0 {
			shape = fmt.Sprintf(" with %d features and %d classes", k.features, k.classes)
		}
		parts = append(parts, k.name+shape+": "+names)
	}
	return "they hold " + strings.Join(parts, "; ")
}
