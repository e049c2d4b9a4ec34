package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"go.yaml.in/yaml/v3"

	"github.com/accord-fl/accord/audit"
	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/pki"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// printProposal says where a governed action stands.
func (m *Main) printProposal(p *pb.Proposal, asJSON bool) error {
	if asJSON {
		return printJSON(m.Stdout, p)
	}
	var orgs []string
	for _, a := range p.GetApprovals() {
		orgs = append(orgs, a.GetOrganization())
	}
	fmt.Fprintf(m.Stdout, "proposal %s (%s): %s, approved by %d of %d organisations (%s)", p.GetId(), p.GetKind(), p.GetStatus(),
		len(p.GetApprovals()), p.GetApprovalsRequired(), strings.Join(orgs, ", "))
	if p.GetOutcome() != "" {
		fmt.Fprintf(m.Stdout, ": %s", p.GetOutcome())
	}
	fmt.Fprintln(m.Stdout)
	return nil
}

func (m *Main) runProposals(ctx context.Context, args []string) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "approve") {
		return usageError{fmt.Errorf("usage: accord proposals list [--json] | proposals approve ID")}
	}
	c, pos, asJSON, err := m.adminCommand("proposals "+args[0], "[ID] [--json]", args[1:], nil)
	if err != nil {
		return err
	}
	defer c.conn.Close()
	if args[0] == "approve" {
		if len(pos) != 1 {
			return usageError{fmt.Errorf("proposals approve: name one proposal ID")}
		}
		resp, err := c.client.Approve(ctx, &pb.ApproveRequest{ProposalId: pos[0], Kind: proposalKind(pos[0])})
		if err != nil {
			return fmt.Errorf("approving %s: %w", pos[0], err)
		}
		return m.printProposal(resp.GetProposal(), asJSON)
	}
	resp, err := c.client.ListProposals(ctx, &pb.ListProposalsRequest{})
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(m.Stdout, resp.GetProposals())
	}
	tw := tabwriter.NewWriter(m.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tTARGET\tPROPOSED BY\tAPPROVALS\tSTATUS\tCREATED")
	for _, p := range resp.GetProposals() {
		target := p.GetJobId() + p.GetMember()
		if p.GetPolicy() != nil {
			target = fmt.Sprintf("%v, %d approvals", p.GetPolicy().GetOrganizations(), p.GetPolicy().GetApprovalsRequired())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s (%s)\t%d/%d\t%s\t%s\n", p.GetId(), p.GetKind(), target, p.GetProposedBy(), p.GetOrganization(),
			len(p.GetApprovals()), p.GetApprovalsRequired(), p.GetStatus(), msTime(p.GetCreatedUnixMs()))
	}
	return tw.Flush()
}

// proposalKind is the kind of action a proposal ID names (the
// coordinators make IDs of these forms); an approval is signed for it, so
// it cannot be counted for a proposal of another kind.
func proposalKind(id string) string {
	for prefix, kind := range map[string]string{"job-": "submit_job", "cancel-": "cancel_job", "add-": "add_member",
		"remove-": "remove_member", "policy-": "set_policy", "revoke-": "revoke", "delete-": "delete_job"} {
		if strings.HasPrefix(id, prefix) {
			return kind
		}
	}
	return ""
}

// loadPolicyFile reads a YAML federation policy.
func loadPolicyFile(path string) (state.Policy, error) {
	var p state.Policy
	b, err := os.ReadFile(path)
	if err != nil {
		return p, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		return p, fmt.Errorf("%s: %w", path, err)
	}
	if err := p.Validate(); err != nil {
		return p, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

func (m *Main) runPolicy(ctx context.Context, args []string) error {
	if len(args) == 0 || (args[0] != "show" && args[0] != "set") {
		return usageError{fmt.Errorf("usage: accord policy show [--json] | policy set FILE")}
	}
	c, pos, asJSON, err := m.adminCommand("policy "+args[0], "[FILE] [--json]", args[1:], nil)
	if err != nil {
		return err
	}
	defer c.conn.Close()
	if args[0] == "set" {
		if len(pos) != 1 {
			return usageError{fmt.Errorf("policy set: name one policy FILE")}
		}
		p, err := loadPolicyFile(pos[0])
		if err != nil {
			return err
		}
		resp, err := c.client.SetPolicy(ctx, &pb.SetPolicyRequest{Policy: &pb.Policy{Organizations: p.Organizations, ApprovalsRequired: p.ApprovalsRequired}})
		if err != nil {
			return fmt.Errorf("proposing %s: %w", pos[0], err)
		}
		return m.printProposal(resp.GetProposal(), asJSON)
	}
	p, err := c.client.GetPolicy(ctx, &pb.GetPolicyRequest{})
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(m.Stdout, p)
	}
	orgs := "any organisation"
	if len(p.GetOrganizations()) > 0 {
		orgs = strings.Join(p.GetOrganizations(), ", ")
	}
	fmt.Fprintf(m.Stdout, "member organisations: %s\napprovals required: %d\n", orgs, max(1, p.GetApprovalsRequired()))
	return nil
}

func (m *Main) runRevoke(ctx context.Context, args []string) error {
	var serial, certFile, reason string
	c, pos, asJSON, err := m.adminCommand("revoke", "NAME | --serial HEX | --cert-file FILE [--reason TEXT]", args, func(fs *flag.FlagSet) {
		fs.StringVar(&serial, "serial", "", "serial number (hex) of the certificate to revoke")
		fs.StringVar(&certFile, "cert-file", "", "the certificate file to revoke (its serial is read)")
		fs.StringVar(&reason, "reason", "", "why, for the audit log")
	})
	if err != nil {
		return err
	}
	defer c.conn.Close()
	req := &pb.RevokeRequest{Serial: serial, Reason: reason}
	if len(pos) == 1 {
		req.Name = pos[0]
	}
	if certFile != "" {
		cert, err := pki.LoadCertificate(certFile)
		if err != nil {
			return fmt.Errorf("--cert-file: %w", err)
		}
		req.Serial = pki.SerialOf(cert)
	}
	if len(pos) > 1 || (req.Name == "") == (req.Serial == "") {
		return usageError{fmt.Errorf("revoke: name one certificate: NAME, --serial HEX or --cert-file FILE (one of them)")}
	}
	resp, err := c.client.Revoke(ctx, req)
	if err != nil {
		return fmt.Errorf("revoking: %w", err)
	}
	if asJSON {
		return printJSON(m.Stdout, resp)
	}
	for _, r := range resp.GetRevoked() {
		fmt.Fprintf(m.Stdout, "revoked %s (serial %s)\n", r.GetName(), r.GetSerial())
	}
	if len(resp.GetRevoked()) == 0 {
		return m.printProposal(resp.GetProposal(), false)
	}
	return nil
}

func (m *Main) runAudit(ctx context.Context, args []string) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "verify") {
		return usageError{fmt.Errorf("usage: accord audit list [--json] | audit verify [--file LOG.json]")}
	}
	if args[0] == "verify" {
		return m.auditVerify(ctx, args[1:])
	}
	c, _, asJSON, err := m.adminCommand("audit list", "[--json]", args[1:], nil)
	if err != nil {
		return err
	}
	defer c.conn.Close()
	entries, err := fetchAudit(ctx, c.client)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(m.Stdout, entries)
	}
	tw := tabwriter.NewWriter(m.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INDEX\tTIME\tSIGNER\tORGANIZATION\tACTION\tSUMMARY\tHASH")
	for _, e := range entries {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%x\n", e.Index, msTime(e.CommittedUnixMs), e.Signer, e.Organization, e.Action, e.Summary, e.Hash[:8])
	}
	return tw.Flush()
}

// fetchAudit reads the whole audit log, page by page.
func fetchAudit(ctx context.Context, client pb.AdminServiceClient) ([]audit.Entry, error) {
	var out []audit.Entry
	for {
		resp, err := client.ListAudit(ctx, &pb.ListAuditRequest{FromIndex: uint64(len(out))})
		if err != nil {
			return nil, err
		}
		for _, e := range resp.GetEntries() {
			out = append(out, audit.FromWire(e))
		}
		if len(resp.GetEntries()) == 0 || uint64(len(out)) >= resp.GetTotal() {
			return out, nil
		}
	}
}

// auditVerify checks an audit log, fetched or exported by `audit list
// --json`, from the federation CA certificate alone.
func (m *Main) auditVerify(ctx context.Context, args []string) error {
	fs := m.newFlagSet("audit verify", "[--file LOG.json] [--ca CA.crt]")
	addr, tf := addAdminFlags(fs)
	file := fs.String("file", "", "an exported log (accord audit list --json); without it, the log is fetched from each of --coordinator (comma-separated) and the copies compared")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *tf.ca == "" {
		return usageError{errors.New("--ca is required: the log is checked against the federation CA certificate")}
	}
	pool, err := pki.LoadCAPool(*tf.ca)
	if err != nil {
		return fmt.Errorf("--ca: %w", err)
	}
	var entries []audit.Entry
	if *file != "" {
		b, err := os.ReadFile(*file)
		if err != nil {
			return fmt.Errorf("--file: %w", err)
		}
		if err := json.Unmarshal(b, &entries); err != nil {
			return fmt.Errorf("--file %s: %w", *file, err)
		}
	} else {
		// Each coordinator's copy verifies, and they agree (a coordinator
		// that rewrote its copy and rehashed it would still verify alone).
		// A follower may be a few entries behind: the shorter copy must be
		// a prefix of the longer.
		for _, a := range strings.Split(*addr, ",") {
			c, err := dialAdmin(a, tf)
			if err != nil {
				return err
			}
			got, err := fetchAudit(ctx, c.client)
			c.conn.Close()
			if err != nil {
				return fmt.Errorf("--coordinator %s: %w", a, err)
			}
			if err := audit.Verify(got, pool); err != nil {
				return fmt.Errorf("--coordinator %s: %w", a, err)
			}
			short, long := got, entries
			if len(short) > len(long) {
				short, long = long, short
			}
			if n := len(short); n > 0 && !bytes.Equal(short[n-1].Hash, long[n-1].Hash) {
				return fmt.Errorf("%w: --coordinator %s's copy differs from the others' at or before entry %d", audit.ErrBroken, a, n-1)
			}
			if len(got) > len(entries) {
				entries = got
			}
		}
	}
	return m.reportVerify(entries, pool)
}

func (m *Main) reportVerify(entries []audit.Entry, pool *x509.CertPool) error {
	if err := audit.Verify(entries, pool); err != nil {
		return err
	}
	last := "none"
	if n := len(entries); n > 0 {
		last = fmt.Sprintf("%x", entries[n-1].Hash)
	}
	fmt.Fprintf(m.Stdout, "audit log verifies: %d entries, every hash chained and every signature an admin's of the federation; head %s\n", len(entries), last)
	return nil
}
