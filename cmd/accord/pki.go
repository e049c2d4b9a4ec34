package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"

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
		dir := fs.String("dir", "pki", "folder for the federation's CA and gossip key")
		fed := fs.String("federation", "accord", "federation name, written into the CA certificate")
		if err := parseFlags(fs, args[1:]); err != nil {
			return err
		}
		if err := pki.InitDir(*dir, *fed); err != nil {
			return fmt.Errorf("--dir %s: %w", *dir, err)
		}
		fmt.Fprintf(m.Stdout, "federation CA and gossip key written to %s (keep ca.key offline)\n", *dir)
		return nil
	case "issue":
		fs := m.newFlagSet("pki issue", "--dir DIR --role coordinator|participant|admin --name NAME --org ORG [--host HOST,...]")
		dir := fs.String("dir", "pki", "the federation folder made by 'accord pki init'")
		role := fs.String("role", "", "coordinator, participant or admin")
		name := fs.String("name", "", "the identity's name (a participant's ID, a coordinator's Raft ID)")
		org := fs.String("org", "", "the organisation it belongs to")
		hosts := fs.String("host", "", "comma-separated extra DNS names or IPs the certificate serves (coordinators)")
		out := fs.String("out", "", "folder to write NAME.crt and NAME.key (default: --dir)")
		if err := parseFlags(fs, args[1:]); err != nil {
			return err
		}
		r, err := pki.ParseRole(*role)
		if err != nil {
			return usageError{fmt.Errorf("--role: %w", err)}
		}
		ca, err := pki.LoadCA(*dir)
		if err != nil {
			return fmt.Errorf("--dir %s: %w", *dir, err)
		}
		if *out == "" {
			*out = *dir
		}
		var hs []string
		if *hosts != "" {
			hs = strings.Split(*hosts, ",")
		}
		certPath, keyPath, err := ca.IssueToDir(*out, pki.Identity{Role: r, Name: *name, Organization: *org}, hs...)
		if err != nil {
			return fmt.Errorf("--name/--org: %w", err)
		}
		fmt.Fprintf(m.Stdout, "issued %s %q of %q: %s, %s\n", r, *name, *org, certPath, keyPath)
		return nil
	}
	return usageError{fmt.Errorf("unknown pki command %q (want init or issue)", args[0])}
}
