package state

import (
	"fmt"
	"slices"
	"sync"
	"time"
	_ "time/tzdata" // time zones in a static binary on a machine without them

	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// Availability is when a participant trains: FromHour to ToHour, local
// time in TimeZone; a window past midnight has ToHour < FromHour. The
// leader chooses cohorts among the participants within their hours at the
// round's time (the job's simulated clock, or now).
type Availability struct {
	TimeZone string `json:"time_zone"`
	FromHour uint32 `json:"from_hour"`
	ToHour   uint32 `json:"to_hour"`
}

// AvailabilityFromProto checks what a participant declared at registration.
func AvailabilityFromProto(a *pb.Availability) (*Availability, error) {
	if a == nil {
		return nil, nil
	}
	out := &Availability{TimeZone: a.GetTimeZone(), FromHour: a.GetFromHour(), ToHour: a.GetToHour()}
	switch {
	case len(out.TimeZone) > 64:
		return nil, fmt.Errorf("availability: time zone name too long")
	case out.FromHour > 23 || out.ToHour > 24 || out.FromHour == out.ToHour:
		return nil, fmt.Errorf("availability: hours %d–%d: want from in 0–23 and a different to in 0–24", out.FromHour, out.ToHour)
	case out.TimeZone == "" || out.TimeZone == "Local":
		// Each coordinator would read these in its own zone, so cohorts
		// would change with the leader.
		return nil, fmt.Errorf("availability: name the time zone (an IANA name such as Europe/Berlin), not %q", out.TimeZone)
	}
	if _, err := time.LoadLocation(out.TimeZone); err != nil {
		return nil, fmt.Errorf("availability: time zone %q: %w", out.TimeZone, err)
	}
	return out, nil
}

func (a *Availability) toProto() *pb.Availability {
	if a == nil {
		return nil
	}
	return &pb.Availability{TimeZone: a.TimeZone, FromHour: a.FromHour, ToHour: a.ToHour}
}

// zones caches the time zones loaded so far, by name: time.LoadLocation
// reads and parses the zone's file on every call, and roundTime asks for
// every eligible participant at every step it tries. Only names that
// loaded are kept, so the cache is bounded by the zone database.
var zones sync.Map // string → *time.Location

// loadZone is time.LoadLocation through the zones cache.
func loadZone(name string) (*time.Location, error) {
	if l, ok := zones.Load(name); ok {
		return l.(*time.Location), nil
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	zones.Store(name, l)
	return l, nil
}

// At reports whether t falls within the window (nil: always available).
func (a *Availability) At(t time.Time) bool {
	if a == nil {
		return true
	}
	loc, err := loadZone(a.TimeZone)
	if err != nil {
		return false // checked at registration; a zone gone since is not available
	}
	h := uint32(t.In(loc).Hour())
	if a.FromHour < a.ToHour {
		return h >= a.FromHour && h < a.ToHour
	}
	return h >= a.FromHour || h < a.ToHour
}

// Equal reports whether two declarations are the same.
func (a *Availability) Equal(b *Availability) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// SimulatedClock gives a job's rounds simulated times, so a rehearsal can
// run a day of working hours across time zones in minutes: round 1 at
// Start, each later round, or retry, PerRound after the one before; a time
// at which fewer than min_participants are within their hours moves on,
// PerRound at a time (up to a day), to the first at which enough are.
type SimulatedClock struct {
	// Start is RFC 3339: "2026-11-30T06:00:00Z".
	Start    string   `yaml:"start" json:"start"`
	PerRound Duration `yaml:"per_round" json:"per_round"`
}

func (s *SimulatedClock) validate() error {
	if s == nil {
		return nil
	}
	if _, err := time.Parse(time.RFC3339, s.Start); err != nil {
		return fmt.Errorf("%w: simulated_clock.start %q: want an RFC 3339 time such as 2026-11-30T06:00:00Z", ErrBadJobSpec, s.Start)
	}
	if d := time.Duration(s.PerRound); d < time.Minute || d > 24*time.Hour {
		return fmt.Errorf("%w: simulated_clock.per_round %s: want 1m–24h", ErrBadJobSpec, d)
	}
	return nil
}

// StartTime is the simulated time of the job's first round.
func (s *SimulatedClock) StartTime() time.Time {
	t, _ := time.Parse(time.RFC3339, s.Start) // validated
	return t
}

func (s *SimulatedClock) toProto() *pb.SimulatedClock {
	if s == nil {
		return nil
	}
	return &pb.SimulatedClock{StartUnixMs: s.StartTime().UnixMilli(), PerRoundMs: time.Duration(s.PerRound).Milliseconds()}
}

func simulatedClockFromProto(p *pb.SimulatedClock) *SimulatedClock {
	if p == nil {
		return nil
	}
	perRound := min(max(p.GetPerRoundMs(), 0), int64(48*time.Hour/time.Millisecond)) // validate refuses what is out of range
	return &SimulatedClock{Start: time.UnixMilli(p.GetStartUnixMs()).UTC().Format(time.RFC3339), PerRound: Duration(time.Duration(perRound) * time.Millisecond)}
}

// Holds reports whether the participant may train on dataset: it
// registered it, or registered no datasets at all (an older daemon, whose
// holdings are unknown).
func (p *Participant) Holds(dataset string) bool {
	return len(p.Datasets) == 0 || slices.ContainsFunc(p.Datasets, func(d DatasetShape) bool { return d.Name == dataset })
}
