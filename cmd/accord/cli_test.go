package main

import (
	"bytes"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/accord-fl/accord/coordinator/coordtest"
	"github.com/accord-fl/accord/pki"
)

// TestCoordinatorList: --coordinator takes a comma-separated list, and the
// first coordinator that answers serves the command; a malformed entry is
// a usage error naming the flag.
func TestCoordinatorList(t *testing.T) {
	tc := coordtest.NewCluster(t, 1)
	tc.Leader(5 * time.Second)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tc.CA.Cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	cert, key, err := tc.CA.IssueToDir(dir, pki.Identity{Role: pki.RoleAdmin, Name: "ops", Organization: "org1"}, pki.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	run := func(coordinators string) (string, error) {
		var out, errb bytes.Buffer
		err := NewMain(&out, &errb).Run(t.Context(), []string{"members", "list", "--json", "--coordinator", coordinators,
			"--ca", caFile, "--cert", cert, "--key", key})
		return out.String() + errb.String(), err
	}
	// Nothing listens on 127.0.0.1:1; the second address answers.
	out, err := run("127.0.0.1:1, " + tc.Addrs()[0])
	if err != nil || !strings.Contains(out, tc.Cfg(0).Name) {
		t.Fatalf("members list through a list whose first coordinator is down: %v\n%s", err, out)
	}
	if _, err := run("127.0.0.1:1,localhost"); err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), "--coordinator") {
		t.Fatalf("a list with an address without a port: %v; want a usage error naming --coordinator", err)
	}
	// A certificate from another federation: the error says so.
	other, err := pki.NewCA("another federation")
	if err != nil {
		t.Fatal(err)
	}
	otherDir := t.TempDir()
	oCert, oKey, err := other.IssueToDir(otherDir, pki.Identity{Role: pki.RoleAdmin, Name: "ops", Organization: "org1"}, pki.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out2, errb2 bytes.Buffer
	err = NewMain(&out2, &errb2).Run(t.Context(), []string{"members", "list", "--coordinator", tc.Addrs()[0], "--ca", caFile, "--cert", oCert, "--key", oKey})
	if err == nil || !strings.Contains(err.Error(), "refused this connection") {
		t.Fatalf("a certificate from another federation: %v; want an error saying the coordinator refused it", err)
	}
	// Nobody there: the error says where it looked and how to change it.
	if _, err := run("127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "no coordinator answered at 127.0.0.1:1") ||
		!strings.Contains(err.Error(), "$ACCORD_COORDINATOR") {
		t.Fatalf("no coordinator running: %v; want the address tried and how to set it", err)
	}
}
