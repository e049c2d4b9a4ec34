package scenarios

import (
	"bufio"
	"cmp"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/accord-fl/accord/model"
	"github.com/accord-fl/accord/pki"
)

// processPKI is a run's federation on disk: the CA certificate, the
// gossip key, and where each identity's certificate and key go.
type processPKI struct {
	ca        *pki.CA
	dir       string
	caFile    string
	gossipKey string
}

// newProcessPKI makes a federation CA and gossip key in dir, as accord pki
// init does (the CA's key stays in memory).
func newProcessPKI(dir, federation string) (*processPKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ca, err := pki.NewCA(federation)
	if err != nil {
		return nil, err
	}
	key, err := pki.NewGossipKey()
	if err != nil {
		return nil, err
	}
	p := &processPKI{ca: ca, dir: dir, caFile: filepath.Join(dir, "ca.crt"), gossipKey: filepath.Join(dir, "gossip.key")}
	if err := os.WriteFile(p.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(p.gossipKey, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		return nil, err
	}
	return p, nil
}

// issue writes id's certificate and key and returns the TLS flags that
// name them.
func (p *processPKI) issue(id pki.Identity, hosts ...string) ([]string, error) {
	cert, key, err := p.ca.IssueToDir(p.dir, id, pki.IssueOptions{Hosts: hosts})
	if err != nil {
		return nil, err
	}
	return []string{"--ca", p.caFile, "--cert", cert, "--key", key}, nil
}

// writeDatasetCSV writes ds in the CSV form accord participant --data
// reads: a header, then one row an example, its label (the class number)
// first and then its features, each printed so that it parses back to the
// same float32. Rows keep ds's order.
func writeDatasetCSV(path string, ds *model.Dataset) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<16)
	w.WriteString(csvLabelColumn)
	for j := range ds.Features {
		w.WriteString(",x" + strconv.Itoa(j))
	}
	w.WriteByte('\n')
	var buf []byte
	for i := range ds.Len() {
		buf = strconv.AppendInt(buf[:0], int64(ds.Y[i]), 10)
		for _, v := range ds.Row(i) {
			buf = append(buf, ',')
			buf = strconv.AppendFloat(buf, float64(v), 'g', -1, 32)
		}
		buf = append(buf, '\n')
		w.Write(buf)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// csvLabelColumn is the label column of the participants' CSV files.
const csvLabelColumn = "label"

// participantDataFlags writes one participant's data into dir and returns
// the flags that give it to accord participant exactly as the in-process
// runner does: its training examples in the same order (local SGD
// shuffles by position), none held out, its own validation shard, the
// classes numbered as in the dataset, and no standardisation. The file is
// named after the dataset, which is the name the participant registers
// with.
func participantDataFlags(dir, dataset string, d participantData) ([]string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if d.validation.Len() == 0 {
		return nil, fmt.Errorf("no validation examples (the CSV loader needs at least one row)")
	}
	for _, ds := range []*model.Dataset{d.train, d.validation} {
		if len(slices.Compact(slices.Sorted(slices.Values(ds.Y)))) < 2 {
			return nil, fmt.Errorf("its examples are of one class only, and accord participant's CSV loader wants two")
		}
	}
	train, val := filepath.Join(dir, dataset+".csv"), filepath.Join(dir, "validation.csv")
	if err := writeDatasetCSV(train, d.train); err != nil {
		return nil, err
	}
	if err := writeDatasetCSV(val, d.validation); err != nil {
		return nil, err
	}
	classes := make([]string, d.train.Classes)
	for i := range classes {
		classes[i] = strconv.Itoa(i)
	}
	return []string{"--data", train, "--validation", val, "--label", csvLabelColumn, "--classes", strings.Join(classes, ","), "--standardize=false"}, nil
}

// processFaults are the fault flags of each participant process: what the
// in-process runner's hooks (the timeline's and the faults' dropper) do to
// it, decided ahead, as the hooks decide by hash of name and round.
type processFaults struct {
	sc        *Scenario
	attackers map[string]float64 // sign_flip faults: every round
	hostile   map[string]float64 // hostile events: from hostileFrom on
	from      map[string]uint32
	killed    map[string]uint32 // kill_after_share_keys: participant → round
}

func newProcessFaults(sc *Scenario) *processFaults {
	f := &processFaults{sc: sc, attackers: byzantine(sc), hostile: map[string]float64{}, from: map[string]uint32{}, killed: map[string]uint32{}}
	for _, e := range sc.Events {
		if e.Kind == EventHostile {
			for name, scale := range chooseHostile(sc, e.Fraction, e.Scale, e.Region) {
				f.hostile[name], f.from[name] = scale, e.Round
			}
		}
	}
	// kill_after_share_keys kills the first participants of the round's
	// cohort to share their keys; with the whole federation in every
	// cohort (checkProcesses), the same number, chosen by hash, die.
	var names []string
	for _, g := range sc.Participants.Groups {
		names = append(names, g.names()...)
	}
	slices.SortFunc(names, func(a, b string) int {
		ka, kb := hashName(a)^sc.Job.Seed*0x6b696c6c, hashName(b)^sc.Job.Seed*0x6b696c6c // "kill"
		return cmp.Compare(ka, kb)
	})
	faults := slices.Clone(sc.Faults)
	slices.SortStableFunc(faults, func(a, b Fault) int { return cmp.Compare(a.Round, b.Round) })
	next := 0
	for _, ft := range faults {
		if ft.Kind != FaultKillAfterShareKeys {
			continue
		}
		n := int(ft.Fraction*float64(sc.Job.ParticipantsPerRound) + 0.5)
		for ; n > 0 && next < len(names); n-- {
			f.killed[names[next]] = ft.Round
			next++
		}
	}
	return f
}

// flags returns participant name's fault flags.
func (f *processFaults) flags(name, region string) []string {
	var out []string
	if scale := f.attackers[name]; scale != 0 {
		out = append(out, "--fault-flip-scale", fmtFloat(scale))
	} else if scale := f.hostile[name]; scale != 0 {
		out = append(out, "--fault-flip-scale", fmtFloat(scale), "--fault-flip-from-round", fmt.Sprint(f.from[name]))
	}
	var delayFrom uint32
	var delay string
	for _, e := range f.sc.Events {
		if e.Kind == EventStraggler && e.Region == region {
			delayFrom, delay = e.Round, time.Duration(e.Delay).String()
		}
	}
	if delay != "" {
		out = append(out, "--fault-epoch-delay", delay, "--fault-epoch-delay-from-round", fmt.Sprint(delayFrom))
	}
	// The timeline's dropouts: first attempts only (timeline.upload).
	var first []string
	for _, e := range f.sc.Events {
		if e.Kind == EventDropout && (e.Region == "" || e.Region == region) && drawDropout(f.sc.Job.Seed, e.Round, name, e.Fraction) {
			first = append(first, fmt.Sprint(e.Round))
		}
	}
	if len(first) > 0 {
		out = append(out, "--fault-drop-first-attempt", strings.Join(first, ","))
	}
	// drop_after_training faults: every attempt (dropper.check).
	var every []string
	for _, ft := range f.sc.Faults {
		if ft.Kind == FaultDropAfterTraining && drawDropout(f.sc.Job.Seed, ft.Round, name, ft.Fraction) {
			every = append(every, fmt.Sprint(ft.Round))
		}
	}
	if len(every) > 0 {
		out = append(out, "--fault-drop-after-training", strings.Join(every, ","))
	}
	if r := f.killed[name]; r > 0 {
		out = append(out, "--fault-kill-after-share-keys", fmt.Sprint(r))
	}
	return out
}

// drawDropout is the in-process runner's draw (timeline.upload,
// dropper.check): whether name drops out of round.
func drawDropout(seed uint64, round uint32, name string, fraction float64) bool {
	return rand.New(rand.NewPCG(seed^uint64(round), hashName(name))).Float64() < fraction
}

func fmtFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
