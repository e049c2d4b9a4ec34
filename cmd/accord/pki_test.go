package main

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/accord-fl/accord/pki"
)

func TestParseValidFor(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, true},
		{"8760h", 8760 * time.Hour, true},
		{"90d", 90 * 24 * time.Hour, true},
		{"1h30m", 90 * time.Minute, true},
		{"0d", 0, false},
		{"-1h", 0, false},
		{"0", 0, false},
		{"1.5d", 0, false},
		{"d", 0, false},
		{"a year", 0, false},
	}
	for _, tt := range tests {
		got, err := parseValidFor(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseValidFor(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestPKIIssue(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := NewMain(&out, &out).Run(context.Background(), append([]string{"pki"}, args...))
		return out.String(), err
	}
	if _, err := run("init", "--dir", dir); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		usage   string // a usage error naming this flag; "" for success
		expires time.Duration
	}{
		{"participant, 90 days", []string{"--role", "participant", "--name", "site-1", "--org", "o", "--valid-for", "90d"}, "", 90 * 24 * time.Hour},
		{"coordinator with hosts, default validity", []string{"--role", "coordinator", "--name", "c1", "--org", "o", "--host", "10.0.0.1,c1.example"}, "", pki.DefaultValidity},
		{"bad validity", []string{"--role", "admin", "--name", "a", "--org", "o", "--valid-for", "soon"}, "--valid-for", 0},
		{"validity beyond the CA", []string{"--role", "admin", "--name", "a", "--org", "o", "--valid-for", "200000h"}, "--valid-for", 0},
		{"host for a participant", []string{"--role", "participant", "--name", "site-2", "--org", "o", "--host", "10.0.0.2"}, "--host", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := run(append([]string{"issue", "--dir", dir}, tt.args...)...)
			if tt.usage != "" {
				var u usageError
				if !errors.As(err, &u) || !strings.Contains(err.Error(), tt.usage) {
					t.Fatalf("got %v; want a usage error naming %s", err, tt.usage)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			name := tt.args[3]
			pair, err := pki.LoadKeyPair(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"))
			if err != nil {
				t.Fatal(err)
			}
			if d := time.Until(pair.Leaf.NotAfter) - tt.expires; d.Abs() > time.Minute {
				t.Errorf("expires %v; want in %v", pair.Leaf.NotAfter, tt.expires)
			}
			if want := pair.Leaf.NotAfter.UTC().Format(time.RFC3339); !strings.Contains(out, want) {
				t.Errorf("output %q does not print the expiry %s", out, want)
			}
		})
	}
}
