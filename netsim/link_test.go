package netsim

import (
	"strings"
	"testing"
	"time"
)

func TestClockSchedule(t *testing.T) {
	const ms = time.Millisecond
	type step struct {
		at   time.Duration // when the chunk is written, from t0
		size int
		d    draw
		want time.Duration // when it is delivered, from t0
	}
	tests := []struct {
		name  string
		link  Link
		steps []step
	}{
		{
			name:  "latency only: writes pipeline",
			link:  Link{Latency: 10 * ms},
			steps: []step{{0, 100, draw{}, 10 * ms}, {0, 100, draw{}, 10 * ms}, {5 * ms, 1, draw{}, 15 * ms}},
		},
		{
			name:  "bandwidth serialises back to back",
			link:  Link{Latency: 10 * ms, Bandwidth: 1000},
			steps: []step{{0, 500, draw{}, 510 * ms}, {0, 500, draw{}, 1010 * ms}},
		},
		{
			name:  "an idle sender starts afresh",
			link:  Link{Latency: 10 * ms, Bandwidth: 1000},
			steps: []step{{0, 500, draw{}, 510 * ms}, {2000 * ms, 500, draw{}, 2510 * ms}},
		},
		{
			name:  "jitter never reorders",
			link:  Link{Latency: 10 * ms, Jitter: 30 * ms},
			steps: []step{{0, 1, draw{jitter: 30 * ms}, 40 * ms}, {1 * ms, 1, draw{}, 40 * ms}, {50 * ms, 1, draw{jitter: 2 * ms}, 62 * ms}},
		},
		{
			name:  "a loss costs the minimum retransmission timeout",
			link:  Link{Latency: 10 * ms, Loss: 0.5},
			steps: []step{{0, 1, draw{lost: true}, 210 * ms}, {1 * ms, 1, draw{}, 210 * ms}},
		},
		{
			name:  "a loss on a long link costs two trips",
			link:  Link{Latency: 150 * ms, Jitter: 10 * ms, Loss: 0.5},
			steps: []step{{0, 1, draw{jitter: 5 * ms, lost: true}, 475 * ms}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t0 := time.Unix(1000, 0)
			var c clock
			for i, s := range tt.steps {
				got := c.schedule(t0.Add(s.at), s.size, tt.link, s.d).Sub(t0)
				if got != s.want {
					t.Errorf("chunk %d delivered at t0+%v; want t0+%v", i, got, s.want)
				}
			}
		})
	}
}

func TestLinkValidate(t *testing.T) {
	tests := []struct {
		link Link
		bad  string // in the error; "" for a valid link
	}{
		{Link{}, ""},
		{Link{Latency: time.Second, Jitter: time.Millisecond, Bandwidth: 1e6, Loss: 0.99}, ""},
		{Link{Latency: -1}, "latency"},
		{Link{Jitter: -1}, "jitter"},
		{Link{Bandwidth: -1}, "bandwidth"},
		{Link{Loss: 1}, "loss"},
		{Link{Loss: -0.1}, "loss"},
	}
	for _, tt := range tests {
		err := tt.link.Validate()
		switch {
		case tt.bad == "" && err != nil:
			t.Errorf("%+v.Validate() = %v; want nil", tt.link, err)
		case tt.bad != "" && (err == nil || !strings.Contains(err.Error(), tt.bad)):
			t.Errorf("%+v.Validate() = %v; want an error about %s", tt.link, err, tt.bad)
		}
	}
}

func TestSetLinkPanicsOnInvalidLink(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Errorf("SetLink with Loss 1 did not panic")
		}
	}()
	New(1).SetLink("eu", "us", Link{Loss: 1})
}

func TestLinkLookup(t *testing.T) {
	n := New(1)
	dflt := Link{Latency: time.Millisecond}
	euUS := Link{Latency: 40 * time.Millisecond}
	inEU := Link{Latency: 2 * time.Millisecond}
	n.SetDefault(dflt)
	n.SetLink("eu", "us", euUS)
	n.SetLink("eu", "eu", inEU)
	tests := []struct {
		from, to string
		want     Link
	}{
		{"eu", "us", euUS},
		{"us", "eu", euUS},
		{"eu", "eu", inEU},
		{"us", "us", dflt},
		{"eu", "jp", dflt},
	}
	for _, tt := range tests {
		if got := n.Link(tt.from, tt.to); got != tt.want {
			t.Errorf("Link(%s, %s) = %+v; want %+v", tt.from, tt.to, got, tt.want)
		}
	}
}
