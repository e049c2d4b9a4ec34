package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/model"
	"github.com/accord-fl/accord/protocol"
	pb "github.com/accord-fl/accord/protocol/accordpb"
	"github.com/accord-fl/accord/scenarios"
)

func msTime(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339)
}

// adminCommand parses the flags shared by admin subcommands plus --json and
// returns the positional arguments.
func (m *Main) adminCommand(name, usage string, args []string, extra func(*flag.FlagSet)) (*adminConn, []string, bool, error) {
	fs := m.newFlagSet(name, usage)
	addr, tf := addAdminFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if extra != nil {
		extra(fs)
	}
	// Positional arguments come first (accord job show ID --json).
	var pos []string
	for len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		pos, args = append(pos, args[0]), args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return nil, nil, false, err
	}
	conn, err := dialAdmin(*addr, tf)
	if err != nil {
		return nil, nil, false, err
	}
	return conn, pos, *asJSON, nil
}

func (m *Main) runJob(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usageError{fmt.Errorf("usage: accord job submit FILE | list | show ID | watch ID | approve ID | cancel ID | delete ID")}
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "watch":
		return m.runJobWatch(ctx, args)
	case "submit":
		var wait waitMode
		var waitTimeout time.Duration
		c, pos, asJSON, err := m.adminCommand("job submit", "FILE [--wait | --wait=done [--wait-timeout D]] [--json]", args, func(fs *flag.FlagSet) {
			fs.Var(&wait, "wait", "after submitting, wait until the job has a committed round (or ends); --wait=done waits until it ends. "+
				"A job that fails or is cancelled exits 1 with its reason")
			fs.DurationVar(&waitTimeout, "wait-timeout", 0, "give up waiting after this long (0: no limit)")
		})
		if err != nil {
			return err
		}
		defer c.conn.Close()
		if len(pos) != 1 {
			return usageError{fmt.Errorf("job submit: name one job FILE")}
		}
		spec, err := loadJobFile(pos[0])
		if err != nil {
			return err
		}
		resp, err := c.client.SubmitJob(ctx, &pb.SubmitJobRequest{Spec: spec.ToProto()})
		if err != nil {
			return fmt.Errorf("submitting %s: %w", pos[0], err)
		}
		if !asJSON {
			// The ID first, so that JOB=$(accord job submit …) gets it
			// whatever the wait brings.
			fmt.Fprintln(m.Stdout, resp.JobId)
		}
		if resp.Status == pb.JobStatus_JOB_STATUS_PENDING_APPROVAL {
			fmt.Fprintf(m.Stderr, "job %s waits for approvals: admins of other organisations run 'accord job approve %s'\n", resp.JobId, resp.JobId)
		}
		out := map[string]any{"job_id": resp.JobId, "status": resp.Status.String()}
		var waitErr error
		if wait != "" {
			j, err := m.waitJob(ctx, c.client, resp.JobId, wait, waitTimeout)
			if err == nil {
				err = jobEnded(j)
			}
			if j != nil {
				out["status"], out["committed_rounds"] = j.Status.String(), j.CommittedRounds
				if j.Reason != "" {
					out["reason"] = j.Reason
				}
			}
			if err == nil && j.CommittedRounds == 0 {
				fmt.Fprintf(m.Stderr, "job %s %s without a committed round: %s\n", j.Id, j.Status, j.Reason)
			}
			waitErr = err
		}
		if asJSON {
			if err := printJSON(m.Stdout, out); err != nil {
				return err
			}
		}
		return waitErr
	case "list":
		c, _, asJSON, err := m.adminCommand("job list", "[--json]", args, nil)
		if err != nil {
			return err
		}
		defer c.conn.Close()
		resp, err := c.client.ListJobs(ctx, &pb.ListJobsRequest{})
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(m.Stdout, resp.Jobs)
		}
		tw := tabwriter.NewWriter(m.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tMODEL\tSTATUS\tROUNDS\tCREATED")
		for _, j := range resp.Jobs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\n", j.Id, j.Spec.GetName(), j.Spec.GetModel(), j.Status, j.CommittedRounds, j.Spec.GetRounds(), msTime(j.CreatedUnixMs))
		}
		return tw.Flush()
	case "show":
		c, pos, asJSON, err := m.adminCommand("job show", "ID [--json]", args, nil)
		if err != nil {
			return err
		}
		defer c.conn.Close()
		if len(pos) != 1 {
			return usageError{fmt.Errorf("job show: name one job ID")}
		}
		j, err := c.client.GetJob(ctx, &pb.GetJobRequest{JobId: pos[0]})
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(m.Stdout, j)
		}
		printJob(m.Stdout, j)
		return nil
	case "approve":
		c, pos, asJSON, err := m.adminCommand("job approve", "ID [--json]", args, nil)
		if err != nil {
			return err
		}
		defer c.conn.Close()
		if len(pos) != 1 {
			return usageError{fmt.Errorf("job approve: name one job ID")}
		}
		resp, err := c.client.Approve(ctx, &pb.ApproveRequest{ProposalId: pos[0], Kind: "submit_job"})
		if err != nil {
			return fmt.Errorf("approving job %s: %w (a cancellation is approved with 'accord proposals approve cancel-…')", pos[0], err)
		}
		return m.printProposal(resp.GetProposal(), asJSON)
	case "cancel":
		c, pos, asJSON, err := m.adminCommand("job cancel", "ID [--json]", args, nil)
		if err != nil {
			return err
		}
		defer c.conn.Close()
		if len(pos) != 1 {
			return usageError{fmt.Errorf("job cancel: name one job ID")}
		}
		resp, err := c.client.CancelJob(ctx, &pb.CancelJobRequest{JobId: pos[0]})
		if err != nil {
			return err
		}
		return m.printProposal(resp.GetProposal(), asJSON)
	case "delete":
		c, pos, asJSON, err := m.adminCommand("job delete", "ID [--json]", args, nil)
		if err != nil {
			return err
		}
		defer c.conn.Close()
		if len(pos) != 1 {
			return usageError{fmt.Errorf("job delete: name one finished job ID")}
		}
		resp, err := c.client.DeleteJob(ctx, &pb.DeleteJobRequest{JobId: pos[0]})
		if err != nil {
			return err
		}
		return m.printProposal(resp.GetProposal(), asJSON)
	}
	return usageError{fmt.Errorf("unknown job command %q (want submit, list, show, watch, approve, cancel or delete)", sub)}
}

// loadJobFile reads a YAML job file over the defaults and validates it.
func loadJobFile(path string) (state.JobSpec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return state.JobSpec{}, err
	}
	spec := state.DefaultJobSpec()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&spec); err != nil {
		return spec, fmt.Errorf("%s: %w", path, err)
	}
	// participants_fraction alone means the fraction, not the default count.
	var fields map[string]any
	if yaml.Unmarshal(b, &fields) == nil && spec.ParticipantsFraction > 0 {
		if _, ok := fields["participants_per_round"]; !ok {
			spec.ParticipantsPerRound = 0
		}
	}
	if err := spec.Validate(); err != nil {
		return spec, fmt.Errorf("%s: %w", path, err)
	}
	return spec, nil
}

func (m *Main) runRound(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "list" {
		return usageError{fmt.Errorf("usage: accord round list JOB [--all] [--json]")}
	}
	var all bool
	c, pos, asJSON, err := m.adminCommand("round list", "JOB [--all] [--json]", args[1:], func(fs *flag.FlagSet) {
		fs.BoolVar(&all, "all", false, "list every attempt, aborted ones too, with why it closed")
	})
	if err != nil {
		return err
	}
	defer c.conn.Close()
	if len(pos) != 1 {
		return usageError{fmt.Errorf("round list: name one JOB")}
	}
	// Follow the pages: a long job's history does not fit one message.
	resp := &pb.ListRoundsResponse{}
	for token := ""; ; {
		page, err := c.client.ListRounds(ctx, &pb.ListRoundsRequest{JobId: pos[0], IncludeAborted: all, PageToken: token})
		if err != nil {
			return err
		}
		resp.Rounds = append(resp.Rounds, page.Rounds...)
		if token = page.NextPageToken; token == "" {
			break
		}
	}
	if asJSON {
		return printJSON(m.Stdout, resp.Rounds)
	}
	tw := tabwriter.NewWriter(m.Stdout, 0, 4, 2, ' ', 0)
	// RESPONDERS are a committed attempt's contributors, or who had
	// answered an aborted one; SILENT who had sent nothing when it
	// closed; REASON why it closed when it did, or why it aborted.
	fmt.Fprintln(tw, "ROUND\tATTEMPT\tSTATUS\tCOHORT\tRESPONDERS\tSILENT\tFED. ACCURACY\tSECONDS\tε\tDIGEST\tREASON")
	for _, r := range resp.Rounds {
		eps := "-"
		if r.Epsilon > 0 {
			eps = fmt.Sprintf("%.4g", r.Epsilon)
		}
		acc := "-"
		if e := r.Evaluation; e != nil && e.Examples > 0 {
			acc = fmt.Sprintf("%.2f%%", 100*float64(e.Correct)/float64(e.Examples))
		}
		secs := "-"
		if r.ClosedUnixMs > 0 {
			secs = fmt.Sprintf("%.2f", float64(r.ClosedUnixMs-r.OpenedUnixMs)/1000)
		}
		digest := r.ModelDigest
		if r.ModelDeleted {
			digest += " (deleted)"
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", r.Number, r.Attempt, shortRoundStatus(r.Status), len(r.Cohort),
			len(r.Responders), len(r.Silent), acc, secs, eps, digest, r.Reason)
	}
	return tw.Flush()
}

func (m *Main) runParticipants(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "list" {
		return usageError{fmt.Errorf("usage: accord participants list [--json]")}
	}
	var waitFor int
	waitTimeout := defaultListWait
	c, _, asJSON, err := m.adminCommand("participants list", "[--wait-for N [--wait-timeout D]] [--json]", args[1:], func(fs *flag.FlagSet) {
		fs.IntVar(&waitFor, "wait-for", 0, "first wait until at least N participants are connected")
		fs.DurationVar(&waitTimeout, "wait-timeout", defaultListWait, "give up waiting after this long (0: no limit)")
	})
	if err != nil {
		return err
	}
	defer c.conn.Close()
	var resp *pb.ListParticipantsResponse
	list := func(ctx context.Context) (bool, string, error) {
		r, err := c.client.ListParticipants(ctx, &pb.ListParticipantsRequest{})
		if err != nil {
			return false, "", err
		}
		resp = r
		connected := 0
		for _, p := range r.Participants {
			if p.Connected {
				connected++
			}
		}
		return connected >= waitFor, fmt.Sprintf("%d of %d participants connected", connected, waitFor), nil
	}
	if waitFor > 0 {
		err = waitUntil(ctx, m.Stderr, waitTimeout, "participants", list)
	} else {
		_, _, err = list(ctx)
	}
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(m.Stdout, resp.Participants)
	}
	tw := tabwriter.NewWriter(m.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tORGANIZATION\tREGION\tDATASETS\tEXAMPLES\tCONNECTED\tLAST SEEN")
	for _, p := range resp.Participants {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%v\t%s\n", p.Id, p.Organization, p.Region, describeDatasets(p.Datasets), p.Examples, p.Connected, msTime(p.LastSeenUnixMs))
	}
	return tw.Flush()
}

func (m *Main) runModel(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "pull" {
		return usageError{fmt.Errorf("usage: accord model pull JOB [--round N] --out FILE")}
	}
	var round, out string
	c, pos, asJSON, err := m.adminCommand("model pull", "JOB [--round N] --out FILE.safetensors", args[1:], func(fs *flag.FlagSet) {
		fs.StringVar(&round, "round", "latest", "committed round to pull: latest (refused while the job has committed none), or a number (0: the initial, untrained model)")
		fs.StringVar(&out, "out", "", "file to write (safetensors)")
	})
	if err != nil {
		return err
	}
	defer c.conn.Close()
	if len(pos) != 1 {
		return usageError{fmt.Errorf("model pull: name one JOB")}
	}
	if out == "" {
		return usageError{fmt.Errorf("model pull: --out FILE is required")}
	}
	n := uint64(0)
	if round == "latest" {
		// Name the round: the file's metadata says which, and a job that
		// has committed nothing has no trained model to pull.
		j, err := c.client.GetJob(ctx, &pb.GetJobRequest{JobId: pos[0]})
		if err != nil {
			return err
		}
		if j.CommittedRounds == 0 {
			return fmt.Errorf("job %s has committed no round yet (%s): nothing trained to pull; --round 0 pulls the initial model", pos[0], j.Status)
		}
		n = uint64(j.CommittedRounds)
		round = strconv.FormatUint(n, 10)
	} else if n, err = strconv.ParseUint(round, 10, 32); err != nil {
		return usageError{fmt.Errorf("--round %q: want a round number or latest", round)}
	}
	blob, first, err := scenarios.PullModel(ctx, c.client, pos[0], uint32(n), false)
	if err != nil {
		return err
	}
	if first == nil || protocol.Digest(blob) != first.Digest {
		return fmt.Errorf("pulled model does not match its digest")
	}
	spec, err := model.ParseSpec(first.Model)
	if err != nil {
		return err
	}
	params, err := protocol.DecodeFloat32(blob)
	if err != nil {
		return err
	}
	mdl, err := model.FromParams(spec, params)
	if err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if err := mdl.WriteSafetensors(f, map[string]string{"job": pos[0], "round": round, "digest": first.Digest}); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if asJSON {
		return printJSON(m.Stdout, map[string]any{"job": pos[0], "round": round, "digest": first.Digest, "model": spec.String(), "file": out})
	}
	fmt.Fprintf(m.Stdout, "wrote %s (job %s round %s: %s, %s)\n", out, pos[0], round, spec, first.Digest)
	return nil
}

func (m *Main) runMembers(ctx context.Context, args []string) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "remove" && args[0] != "add") {
		return usageError{fmt.Errorf("usage: accord members list [--json] | members add NAME | members remove NAME")}
	}
	var waitFor int
	waitTimeout := defaultListWait
	c, pos, asJSON, err := m.adminCommand("members "+args[0], "[NAME] [--wait-for N [--wait-timeout D]] [--json]", args[1:], func(fs *flag.FlagSet) {
		if args[0] == "list" {
			fs.IntVar(&waitFor, "wait-for", 0, "first wait until a leader is elected and at least N coordinators are Raft voters")
			fs.DurationVar(&waitTimeout, "wait-timeout", defaultListWait, "give up waiting after this long (0: no limit)")
		}
	})
	if err != nil {
		return err
	}
	defer c.conn.Close()
	if args[0] == "remove" || args[0] == "add" {
		if len(pos) != 1 {
			return usageError{fmt.Errorf("members %s: name one coordinator", args[0])}
		}
		var p *pb.Proposal
		if args[0] == "remove" {
			resp, err := c.client.RemoveMember(ctx, &pb.RemoveMemberRequest{Name: pos[0]})
			if err != nil {
				return err
			}
			p = resp.GetProposal()
		} else {
			resp, err := c.client.AddMember(ctx, &pb.AddMemberRequest{Name: pos[0]})
			if err != nil {
				return err
			}
			p = resp.GetProposal()
		}
		return m.printProposal(p, asJSON)
	}
	var resp *pb.ListMembersResponse
	list := func(ctx context.Context) (bool, string, error) {
		r, err := c.client.ListMembers(ctx, &pb.ListMembersRequest{})
		if err != nil {
			return false, "", err
		}
		resp = r
		voters := 0
		for _, mem := range r.Members {
			if mem.RaftRole == "voter" || mem.RaftRole == "leader" {
				voters++
			}
		}
		if r.Leader == "" {
			return false, fmt.Sprintf("%d of %d coordinators are voters; no leader yet", voters, waitFor), nil
		}
		return voters >= waitFor, fmt.Sprintf("%d of %d coordinators are voters; leader %s", voters, waitFor, r.Leader), nil
	}
	if waitFor > 0 {
		err = waitUntil(ctx, m.Stderr, waitTimeout, "coordinators", list)
	} else {
		_, _, err = list(ctx)
	}
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(m.Stdout, resp)
	}
	tw := tabwriter.NewWriter(m.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tORGANIZATION\tGRPC\tRAFT\tRAFT ROLE\tGOSSIP\tLAST CONTACT")
	for _, mem := range resp.Members {
		contact := "-"
		if mem.Name == resp.AnsweredBy && mem.RaftRole != "leader" {
			contact = fmt.Sprintf("%dms", mem.LastContactMs)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", mem.Name, mem.Organization, mem.GrpcAddress, mem.RaftAddress, mem.RaftRole, mem.GossipState, contact)
	}
	return tw.Flush()
}

// describeDatasets is what a participant holds, in one phrase:
// "mnist (784 features, 10 classes)".
func describeDatasets(ds []*pb.DatasetShape) string {
	if len(ds) == 0 {
		return "-"
	}
	var parts []string
	for _, d := range ds {
		if d.Features > 0 && d.Classes > 0 {
			parts = append(parts, fmt.Sprintf("%s (%d features, %d classes)", d.Name, d.Features, d.Classes))
		} else {
			parts = append(parts, d.Name)
		}
	}
	return strings.Join(parts, ", ")
}

// orDefault is s, or def when s is empty.
func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// describeAggregation is a job's aggregation section in one phrase.
func describeAggregation(a *pb.Aggregation) string {
	out := orDefault(a.GetRule(), "fedavg")
	switch a.GetRule() {
	case "trimmed_mean":
		out += fmt.Sprintf(" (β = %g)", a.GetBeta())
	case "krum", "multi_krum":
		out += fmt.Sprintf(" (f = %d)", a.GetF())
	}
	if a.GetNormBound() > 0 {
		out += fmt.Sprintf(", norm bound %g× median", a.GetNormBound())
	}
	if a.GetGroups() > 0 {
		out += fmt.Sprintf(" over %d secure-aggregation groups (by %s)", a.GetGroups(), orDefault(a.GetGroupBy(), "random"))
	}
	return out
}

// printJob writes what accord job show prints about a job.
func printJob(w io.Writer, j *pb.Job) {
	fmt.Fprintf(w, "job %s (%s)\n  submitted by %s of %s\n  model %s on %s\n  status %s %s\n  committed rounds %d of %d\n",
		j.Id, j.Spec.GetName(), j.SubmittedBy, j.Organization, j.Spec.GetModel(), j.Spec.GetDataset(), j.Status, j.Reason, j.CommittedRounds, j.Spec.GetRounds())
	switch {
	case j.Spec.GetTargetAccuracy() == 0:
		fmt.Fprintln(w, "  no target accuracy: runs every round")
	case j.TargetReachedAtRound > 0:
		fmt.Fprintf(w, "  target accuracy %.4g, reached at round %d\n", j.Spec.GetTargetAccuracy(), j.TargetReachedAtRound)
	default:
		fmt.Fprintf(w, "  target accuracy %.4g, not reached yet\n", j.Spec.GetTargetAccuracy())
	}
	fmt.Fprintf(w, "  created %s, finished %s\n", msTime(j.CreatedUnixMs), msTime(j.FinishedUnixMs))
	fmt.Fprintf(w, "  strategy %s, aggregation %s\n", orDefault(j.Spec.GetStrategy(), "fedavg"), describeAggregation(j.Spec.GetAggregation()))
	if d, p := j.Spec.GetDp(), j.Privacy; d != nil && p != nil {
		fmt.Fprintf(w, "  privacy (%s DP, z = %g, clip %g): ε = %.4g at δ = %g after %d rounds (Rényi order %g)",
			d.Mode, d.NoiseMultiplier, d.Clip, p.Epsilon, p.Delta, p.Steps, p.Order)
		if d.MaxEpsilon > 0 {
			fmt.Fprintf(w, ", budget %g", d.MaxEpsilon)
		}
		fmt.Fprintln(w)
	}
	for _, a := range j.Approvals {
		fmt.Fprintf(w, "  approved by %s of %s at %s\n", a.Admin, a.Organization, msTime(a.UnixMs))
	}
	for _, r := range j.Refusals {
		fmt.Fprintf(w, "  refused by participant %s at %s: %s\n", r.Participant, msTime(r.UnixMs), r.Reason)
	}
	if len(j.TaskFailures) > 0 {
		fmt.Fprintln(w, "  task failures participants reported (the latest of each):")
	}
	for _, f := range j.TaskFailures {
		at := fmt.Sprintf("round %d attempt %d", f.Round, f.Attempt)
		if f.Task == "evaluate" {
			at = fmt.Sprintf("evaluating round %d's model", f.Round)
		}
		fmt.Fprintf(w, "    %s, %s, at %s: %s\n", f.Participant, at, msTime(f.UnixMs), f.Reason)
	}
}
