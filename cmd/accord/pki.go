package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/accord-fl/accord/pki"
)

type pkiMaterial struct {
	pool *x509.CertPool
	cert tls.Certificate
}

func (m *Main) runPKI(_ context.Context, args []string) error {
	if len(args) == 0 {
		return usageError{fmt.Errorf("usage: accord pki init|issue [flags]")}
	}
	switch args[0] {
	case "init":
		fs := m.newFlagSet("pki init", "--dir DIR [--federation NAME]")
		dir := fs.String("dir", defaultPKIDir, "folder for the federation's CA and gossip key (keep it out of any source tree)")
		fed := fs.String("federation", "accord", "federation name, written into the CA certificate")
		if err := parseFlags(fs, args[1:]); err != nil {
			return err
		}
		if err := refuseSourceFolder(*dir); err != nil {
			return err
		}
		if err := pki.InitDir(*dir, *fed); err != nil {
			return fmt.Errorf("--dir %s: %w", *dir, err)
		}
		fmt.Fprintf(m.Stdout, "federation CA and gossip key written to %s (keep ca.key offline)\n", *dir)
		return nil
	case "issue":
		fs := m.newFlagSet("pki issue", "--dir DIR --role coordinator|participant|admin|consumer|inference --name NAME --org ORG [--host HOST,...] [--valid-for DURATION]")
		dir := fs.String("dir", defaultPKIDir, "the federation folder made by 'accord pki init'")
		role := fs.String("role", "", "coordinator, participant, admin, consumer (a client of accord serve) or inference (accord serve's own certificate)")
		name := fs.String("name", "", "the identity's name (a participant's ID, a coordinator's Raft ID)")
		org := fs.String("org", "", "the organisation it belongs to")
		hosts := fs.String("host", "", "coordinators and inference servers only: comma-separated DNS names or IPs the certificate serves (default: localhost and loopback)")
		validFor := fs.String("valid-for", "", "how long the certificate is valid: a Go duration (8760h) or days (90d) (default: 1 year)")
		out := fs.String("out", "", "folder to write NAME.crt and NAME.key (default: --dir)")
		if err := parseFlags(fs, args[1:]); err != nil {
			return err
		}
		r, err := pki.ParseRole(*role)
		if err != nil {
			return usageError{fmt.Errorf("--role: %w", err)}
		}
		valid, err := parseValidFor(*validFor)
		if err != nil {
			return usageError{fmt.Errorf("--valid-for %q: %w", *validFor, err)}
		}
		var hs []string
		for _, h := range strings.Split(*hosts, ",") {
			if h = strings.TrimSpace(h); h != "" {
				hs = append(hs, h)
			}
		}
		if len(hs) > 0 && r != pki.RoleCoordinator && r != pki.RoleInference {
			return usageError{fmt.Errorf("--host: a %s certificate serves no hosts (only coordinators' and inference servers' do)", r)}
		}
		ca, err := pki.LoadCA(*dir)
		if err != nil {
			return fmt.Errorf("--dir %s: %w", *dir, err)
		}
		if *out == "" {
			*out = *dir
		}
		certPath, keyPath, err := ca.IssueToDir(*out, pki.Identity{Role: r, Name: *name, Organization: *org}, pki.IssueOptions{Hosts: hs, ValidFor: valid})
		if errors.Is(err, pki.ErrBadValidity) {
			return usageError{fmt.Errorf("--valid-for: %w", err)}
		} else if err != nil {
			return fmt.Errorf("--name/--org: %w", err)
		}
		pair, err := pki.LoadKeyPair(certPath, keyPath)
		if err != nil {
			return err
		}
		fmt.Fprintf(m.Stdout, "issued %s %q of %q (serial %s, expires %s): %s, %s\n", r, *name, *org,
			pki.SerialOf(pair.Leaf), pair.Leaf.NotAfter.UTC().Format(time.RFC3339), certPath, keyPath)
		return nil
	}
	return usageError{fmt.Errorf("unknown pki command %q (want init or issue)", args[0])}
}

// defaultPKIDir is where 'accord pki' keeps the federation's CA by
// default: beside the other files the README's federation by hand makes,
// in a folder .gitignore names, never in the source tree.
const defaultPKIDir = "federation/pki"

// refuseSourceFolder refuses to write a CA key into a folder of Go source
// files (running 'accord pki init --dir pki' in a checkout of Accord would
// put it beside pki.go), where it is one 'git add' away from a commit.
func refuseSourceFolder(dir string) error {
	matches, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	if len(matches) > 0 {
		return usageError{fmt.Errorf("--dir %s holds Go source files (%s): refusing to write the federation's CA key into a source tree; "+
			"use a folder of its own, such as %s (the default)", dir, filepath.Base(matches[0]), defaultPKIDir)}
	}
	return nil
}

// parseValidFor reads --valid-for: empty (the default validity), a Go
// duration such as 8760h, or a whole number of days such as 90d.
func parseValidFor(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 32)
		if err != nil || n > 100*366 {
			return 0, errors.New("want a whole number of days, for example 90d")
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, errors.New("want a duration such as 8760h or a number of days such as 90d")
		}
	}
	if d <= 0 {
		return 0, errors.New("want a positive duration")
	}
	return d, nil
}
