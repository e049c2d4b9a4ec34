package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/accord-fl/accord/model"
	"github.com/accord-fl/accord/participant"
	"github.com/accord-fl/accord/participant/data"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// participantFlags are accord participant's flags.
type participantFlags struct {
	addrs, dataName, shard, label, valFile, classes, region, hours, timeZone, level, policyFile, configFile *string
	examples                                                                                                *int
	seed, declaredExamples                                                                                  *uint64
	valFraction                                                                                             *float64
	standardize, pin                                                                                        *bool
	killAfterShareKeys                                                                                      *uint
	faults                                                                                                  faultFlags
	tls                                                                                                     tlsFlags
}

// participantFlagSet defines accord participant's flags.
func (m *Main) participantFlagSet() (*flag.FlagSet, participantFlags) {
	fs := m.newFlagSet("participant", "--coordinator ADDR[,ADDR] --ca FILE --cert FILE --key FILE --data mnist --shard I/N | --data FILE.csv --label COL [--policy FILE] | --config FILE [flags]")
	return fs, participantFlags{
		addrs:       fs.String("coordinator", envOr("ACCORD_COORDINATOR", "127.0.0.1:7700"), "comma-separated coordinator addresses [$ACCORD_COORDINATOR]"),
		dataName:    fs.String("data", "", "mnist, or a CSV file of local records"),
		shard:       fs.String("shard", "", "mnist only: I/N takes IID shard I of N (1-based) of the training set, and shard I of the test set for validation"),
		examples:    fs.Int("examples", 0, "mnist only: at most this many training examples (0: the whole shard)"),
		seed:        fs.Uint64("seed", 1, "seed of the shard split and the CSV validation split"),
		label:       fs.String("label", "label", "CSV only: the label column"),
		valFraction: fs.Float64("validation-fraction", 0.1, "CSV only: fraction of rows kept for evaluating global models"),
		valFile:     fs.String("validation", "", "CSV only: a CSV file (same columns) of the rows global models are evaluated on; every row of --data then trains, in file order, and --validation-fraction is ignored"),
		classes:     fs.String("classes", "", "CSV only: the label values in class order, comma-separated (0,1,…,9), so that a site lacking a class numbers the others as the federation does (default: the file's distinct labels, sorted)"),
		standardize: fs.Bool("standardize", true, "CSV only: shift and scale each feature to mean 0 and deviation 1, as measured on the training rows"),
		region:      fs.String("region", "", "region or country reported at registration"),
		hours:       fs.String("working-hours", "", "FROM-TO: train only in these local hours (FROM 0–23, TO 0–24; TO < FROM runs past midnight), declared to the coordinators, which choose cohorts among participants within their hours"),
		timeZone:    fs.String("time-zone", "", "IANA time zone of --working-hours (default: the machine's, as $TZ or /etc/localtime names it)"),
		pin:         fs.Bool("pin-coordinators", false, "connect only to the --coordinator addresses, not to the others the cluster reports (a site behind a proxy)"),
		level:       fs.String("log-level", "info", "debug, info, warn or error"),
		policyFile:  fs.String("policy", "", "the site's policy: a YAML file of the organisations, models, secure aggregation and rounds this site accepts (default: accept every job)"),
		configFile: fs.String("config", "", "YAML `FILE` setting any of these flags by name (data: mnist, coordinator: [HOST:PORT, …]); "+
			"flags given on the command line override it"),
		killAfterShareKeys: fs.Uint("fault-kill-after-share-keys", 0,
			"fault injection for tests: SIGKILL this process right after it sends its key shares in this round (0: never)"),
		declaredExamples: fs.Uint64("fault-declared-examples", 0,
			"fault injection for tests: declare this many training examples instead of the real count (0: the real count)"),
		faults: addFaultFlags(fs),
		tls:    addTLSFlags(fs),
	}
}

// parseParticipantFlags parses args, then the --config file if one is
// named (its flags, unless args set them).
func parseParticipantFlags(fs *flag.FlagSet, f participantFlags, args []string) error {
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *f.configFile == "" {
		return nil
	}
	var vals flagValues
	if err := decodeConfigFile(*f.configFile, &vals); err != nil {
		return usageError{err}
	}
	if err := applyFlagValues(fs, *f.configFile, vals); err != nil {
		return usageError{err}
	}
	return nil
}

func (m *Main) runParticipant(ctx context.Context, args []string) error {
	fs, f := m.participantFlagSet()
	if err := parseParticipantFlags(fs, f, args); err != nil {
		return err
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*f.level)); err != nil {
		return usageError{fmt.Errorf("--log-level: %w", err)}
	}
	var policy *participant.Policy
	if *f.policyFile != "" {
		var err error
		if policy, err = participant.LoadPolicy(*f.policyFile); err != nil {
			return fmt.Errorf("--policy: %w", err)
		}
	}
	mat, err := f.tls.load()
	if err != nil {
		return err
	}
	var train, val *model.Dataset
	datasetName := *f.dataName
	switch {
	case *f.dataName == "mnist":
		if *f.valFile != "" || *f.classes != "" {
			return usageError{fmt.Errorf("--validation and --classes are for CSV data, not mnist")}
		}
		i, n, err := parseShard(*f.shard)
		if err != nil {
			return usageError{fmt.Errorf("--shard %q: %w", *f.shard, err)}
		}
		all, test, err := data.LoadMNISTFromModule(ctx)
		if err != nil {
			return err
		}
		parts, err := data.IID(all.Len(), n, *f.seed)
		if err != nil {
			return err
		}
		valParts, err := data.IID(test.Len(), n, *f.seed+1)
		if err != nil {
			return err
		}
		idx := parts[i-1]
		if *f.examples > 0 && len(idx) > *f.examples {
			idx = idx[:*f.examples]
		}
		train, val = all.Subset(idx), test.Subset(valParts[i-1])
	case *f.dataName != "":
		if !(*f.valFraction >= 0 && *f.valFraction < 1) {
			return usageError{fmt.Errorf("--validation-fraction %v: want a fraction in [0, 1)", *f.valFraction)}
		}
		var err error
		train, val, err = loadCSVData(csvOptions{file: *f.dataName, label: *f.label, validation: *f.valFile, validationFraction: *f.valFraction,
			classes: *f.classes, standardize: *f.standardize, seed: *f.seed})
		if err != nil {
			return err
		}
		datasetName = strings.TrimSuffix(fileBase(*f.dataName), ".csv")
	default:
		return usageError{fmt.Errorf("--data is required: mnist or a CSV file")}
	}
	avail, err := parseWorkingHours(*f.hours, *f.timeZone)
	if err != nil {
		return err
	}
	cfg := participant.Config{
		Coordinators: strings.Split(*f.addrs, ","), Cert: mat.cert, CA: mat.pool, Region: *f.region, Dataset: datasetName, Availability: avail, PinCoordinators: *f.pin,
		Train: train, Validation: val, Logger: slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lv})),
		Policy: policy, DeclaredExamples: *f.declaredExamples,
	}
	if err := f.faults.apply(&cfg); err != nil {
		return err
	}
	if round := uint32(*f.killAfterShareKeys); round > 0 {
		cfg.AfterTask = func(t *pb.Task) {
			if t.Kind == pb.TaskKind_TASK_KIND_SECAGG_SHARE_KEYS && t.Round == round {
				fmt.Fprintf(os.Stderr, "fault injection: killed after sharing keys in round %d\n", round)
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}
		}
	}
	p, err := participant.New(cfg)
	if err != nil {
		return err
	}
	return p.Run(ctx)
}

// csvOptions say how a participant reads its CSV data.
type csvOptions struct {
	file, label string
	// validation, if set, is a file of validation rows: every row of file
	// then trains, in file order. Otherwise validationFraction of file's
	// rows, drawn with seed, are held out.
	validation         string
	validationFraction float64
	// classes, if set, is the comma-separated label values in class order.
	classes     string
	standardize bool
	seed        uint64
}

// loadCSVData reads a participant's training and validation data.
func loadCSVData(o csvOptions) (train, val *model.Dataset, err error) {
	table, err := data.LoadCSV(o.file, o.label)
	if err != nil {
		return nil, nil, fmt.Errorf("--data: %w", err)
	}
	classes := table.Classes
	if o.classes != "" {
		classes = strings.Split(o.classes, ",")
		for i := range classes {
			classes[i] = strings.TrimSpace(classes[i])
		}
		if len(classes) < 2 || slices.Contains(classes, "") || len(slices.Compact(slices.Sorted(slices.Values(classes)))) != len(classes) {
			return nil, nil, usageError{fmt.Errorf("--classes %q: want at least two different comma-separated label values", o.classes)}
		}
	}
	if err := renumberClasses(table, classes); err != nil {
		return nil, nil, fmt.Errorf("--data: %w", err)
	}
	if o.validation == "" {
		train, val = data.Split(table.Data, 1-o.validationFraction, o.seed)
	} else {
		vt, err := data.LoadCSV(o.validation, o.label)
		if err != nil {
			return nil, nil, fmt.Errorf("--validation: %w", err)
		}
		if !slices.Equal(vt.FeatureNames, table.FeatureNames) {
			return nil, nil, fmt.Errorf("--validation %s: its feature columns differ from those of --data %s", o.validation, o.file)
		}
		if err := renumberClasses(vt, classes); err != nil {
			return nil, nil, fmt.Errorf("--validation: %w", err)
		}
		train, val = table.Data, vt.Data
	}
	if o.standardize {
		std := data.FitStandardizer(train)
		std.Apply(train)
		std.Apply(val)
	}
	return train, val, nil
}

// renumberClasses makes t's labels index classes, which must hold every
// label t has.
func renumberClasses(t *data.CSVTable, classes []string) error {
	index := make([]int32, len(t.Classes))
	for i, c := range t.Classes {
		k := slices.Index(classes, c)
		if k < 0 {
			return fmt.Errorf("label %q is not one of the classes %s", c, strings.Join(classes, ","))
		}
		index[i] = int32(k)
	}
	for i, y := range t.Data.Y {
		t.Data.Y[i] = index[y]
	}
	t.Classes, t.Data.Classes = classes, len(classes)
	return nil
}

// faultFlags inject faults into a participant process, as a scenario's
// timeline does in process (scenarios.RunProcesses sets them).
type faultFlags struct {
	flipScale   *float64
	flipFrom    *uint
	epochDelay  *time.Duration
	delayFrom   *uint
	dropRounds  *string
	dropFirstOf *string
}

func addFaultFlags(fs *flag.FlagSet) faultFlags {
	return faultFlags{
		flipScale: fs.Float64("fault-flip-scale", 0, "fault injection for tests: send −S times every update trained (a sign-flipping attack; 0: never)"),
		flipFrom:  fs.Uint("fault-flip-from-round", 0, "fault injection for tests: --fault-flip-scale applies from this round on (0: every round)"),
		epochDelay: fs.Duration("fault-epoch-delay", 0,
			"fault injection for tests: every local epoch takes at least this long (a slow site; 0: none)"),
		delayFrom: fs.Uint("fault-epoch-delay-from-round", 0, "fault injection for tests: --fault-epoch-delay applies from this round on (0: every round)"),
		dropRounds: fs.String("fault-drop-after-training", "",
			"fault injection for tests: comma-separated rounds whose update this participant trains but never sends, in every attempt"),
		dropFirstOf: fs.String("fault-drop-first-attempt", "",
			"fault injection for tests: comma-separated rounds whose first attempt's update this participant trains but never sends"),
	}
}

// apply installs the faults the flags ask for.
func (f faultFlags) apply(cfg *participant.Config) error {
	if s := *f.flipScale; s < 0 || math.IsNaN(s) || math.IsInf(s, 0) {
		return usageError{fmt.Errorf("--fault-flip-scale %v: want a finite factor ≥ 0", s)}
	}
	if *f.epochDelay < 0 {
		return usageError{fmt.Errorf("--fault-epoch-delay %s: want a duration ≥ 0", *f.epochDelay)}
	}
	drop, err := parseRounds(*f.dropRounds)
	if err != nil {
		return usageError{fmt.Errorf("--fault-drop-after-training: %w", err)}
	}
	dropFirst, err := parseRounds(*f.dropFirstOf)
	if err != nil {
		return usageError{fmt.Errorf("--fault-drop-first-attempt: %w", err)}
	}
	if *f.flipScale > 0 || *f.epochDelay > 0 {
		flip, flipFrom, delay, delayFrom := *f.flipScale, uint32(*f.flipFrom), *f.epochDelay, uint32(*f.delayFrom)
		cfg.FaultAt = func(t *pb.Task) (float64, time.Duration) {
			var fl float64
			var d time.Duration
			if t.Round >= flipFrom {
				fl = flip
			}
			if t.Round >= delayFrom {
				d = delay
			}
			return fl, d
		}
	}
	if len(drop) > 0 || len(dropFirst) > 0 {
		cfg.BeforeUpload = func(t *pb.Task) error {
			if slices.Contains(drop, t.Round) || t.Attempt == 1 && slices.Contains(dropFirst, t.Round) {
				return fmt.Errorf("fault injection: dropping the update of round %d attempt %d after training", t.Round, t.Attempt)
			}
			return nil
		}
	}
	return nil
}

// parseRounds reads a comma-separated list of round numbers ≥ 1.
func parseRounds(s string) ([]uint32, error) {
	if s == "" {
		return nil, nil
	}
	var out []uint32
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 32)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q: want comma-separated round numbers ≥ 1", s)
		}
		out = append(out, uint32(n))
	}
	return out, nil
}

func fileBase(path string) string {
	if i := strings.LastIndexAny(path, `/\`); i >= 0 {
		return path[i+1:]
	}
	return path
}

// parseShard reads "I/N" with 1 ≤ I ≤ N.
func parseShard(s string) (int, int, error) {
	a, b, ok := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || i < 1 || i > n {
		return 0, 0, fmt.Errorf("want I/N with 1 ≤ I ≤ N, for example 3/100")
	}
	return i, n, nil
}

// parseWorkingHours reads --working-hours FROM-TO and --time-zone.
func parseWorkingHours(hours, zone string) (*pb.Availability, error) {
	if hours == "" {
		if zone != "" {
			return nil, usageError{fmt.Errorf("--time-zone applies to --working-hours; set both")}
		}
		return nil, nil
	}
	from, to, ok := strings.Cut(hours, "-")
	f, errF := strconv.ParseUint(from, 10, 32)
	t, errT := strconv.ParseUint(to, 10, 32)
	if !ok || errF != nil || errT != nil || f > 23 || t > 24 || f == t {
		return nil, usageError{fmt.Errorf("--working-hours %q: want FROM-TO, FROM in 0–23 and a different TO in 0–24 (8-18; 22-6 runs past midnight)", hours)}
	}
	if zone == "" {
		zone = machineTimeZone()
	}
	if zone == "" {
		return nil, usageError{fmt.Errorf("--working-hours: name the site's time zone with --time-zone (this machine names none: no $TZ, no /etc/localtime link)")}
	}
	if _, err := time.LoadLocation(zone); err != nil {
		return nil, usageError{fmt.Errorf("--time-zone %q: %v", zone, err)}
	}
	return &pb.Availability{TimeZone: zone, FromHour: uint32(f), ToHour: uint32(t)}, nil
}

// machineTimeZone is the machine's IANA zone name: $TZ, else the zone
// /etc/localtime links to; "" if neither names one.
func machineTimeZone() string {
	if tz := strings.TrimPrefix(os.Getenv("TZ"), ":"); tz != "" {
		return tz
	}
	target, err := os.Readlink("/etc/localtime")
	if err != nil {
		return ""
	}
	if _, zone, ok := strings.Cut(target, "zoneinfo/"); ok {
		return zone
	}
	return ""
}
