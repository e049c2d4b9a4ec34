package state

import (
	"testing"
	"time"

	pb "github.com/accord-fl/accord/protocol/accordpb"
)

func TestAvailabilityAt(t *testing.T) {
	day := &Availability{TimeZone: "Asia/Tokyo", FromHour: 9, ToHour: 17}
	night := &Availability{TimeZone: "Europe/Berlin", FromHour: 22, ToHour: 6}
	cases := []struct {
		a    *Availability
		utc  string
		want bool
	}{
		{nil, "2026-11-30T03:00:00Z", true},
		{day, "2026-11-30T00:00:00Z", true},   // 09:00 in Tokyo
		{day, "2026-11-30T07:59:00Z", true},   // 16:59
		{day, "2026-11-30T08:00:00Z", false},  // 17:00
		{day, "2026-11-29T23:59:00Z", false},  // 08:59
		{night, "2026-11-30T21:00:00Z", true}, // 22:00 in Berlin (CET)
		{night, "2026-11-30T04:59:00Z", true}, // 05:59
		{night, "2026-11-30T05:00:00Z", false},
		{night, "2026-11-30T12:00:00Z", false},
	}
	for _, c := range cases {
		at, _ := time.Parse(time.RFC3339, c.utc)
		if got := c.a.At(at); got != c.want {
			t.Errorf("%+v at %s: %v, want %v", c.a, c.utc, got, c.want)
		}
	}
}

func TestAvailabilityFromProtoRefusesNonsense(t *testing.T) {
	for _, a := range []*pb.Availability{
		{TimeZone: "Mars/Olympus", FromHour: 8, ToHour: 18},
		{TimeZone: "Europe/Berlin", FromHour: 8, ToHour: 8},
		{TimeZone: "Europe/Berlin", FromHour: 25, ToHour: 3},
		{TimeZone: "Europe/Berlin", FromHour: 24, ToHour: 0},
		{TimeZone: "Local", FromHour: 8, ToHour: 18},
		{TimeZone: "", FromHour: 8, ToHour: 18},
	} {
		if _, err := AvailabilityFromProto(a); err == nil {
			t.Errorf("%v accepted", a)
		}
	}
}
