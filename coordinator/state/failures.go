package state

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// A participant whose task fails (the model does not fit its data, local
// training failed) says why with ReportTaskFailure. The leader stops
// waiting for it in that round, names the reasons when the round aborts,
// and commits the report (recordTaskFailure) so that `accord job show`
// prints it on any coordinator. What a participant sends is text shown to
// operators from a party nobody trusts: it is cut to maxReasonBytes without
// control characters, at most one report per participant and round attempt
// is committed, and a job keeps the latest maxTaskFailures, one per
// participant.

// maxReasonBytes bounds a reported reason.
const maxReasonBytes = 200

// maxTaskFailures bounds the failures a job keeps.
const maxTaskFailures = 8

// RecordTaskFailure is the command recording a participant's failed task.
type RecordTaskFailure struct {
	JobID   string      `json:"job_id"`
	Failure TaskFailure `json:"failure"`
}

// TaskFailure is a participant's report that a task of a job failed or
// could not run on its data.
type TaskFailure struct {
	Participant string `json:"participant"`
	Reason      string `json:"reason"`
	// Round is the round trained (for an evaluation, the model's round).
	Round   uint32 `json:"round"`
	Attempt uint32 `json:"attempt,omitempty"`
	// Task is "train" or "evaluate".
	Task string `json:"task"`
	At   int64  `json:"at"`
}

// applyRecordTaskFailure keeps the failure as the participant's latest on a
// running job, dropping the oldest beyond maxTaskFailures. The reason is
// bounded here too: the leader that wrote the command may be hostile.
func (f *FSM) applyRecordTaskFailure(c *RecordTaskFailure) error {
	j, err := f.runningJob(c.JobID)
	if err != nil {
		return err
	}
	tf := c.Failure
	tf.Reason = SanitizeReason(tf.Reason)
	if len(tf.Participant) > 256 || len(tf.Task) > 16 {
		return fmt.Errorf("%w: task failure of %d-byte participant name", ErrBadRequest, len(tf.Participant))
	}
	j.Failures = slices.DeleteFunc(slices.Clone(j.Failures), func(o TaskFailure) bool { return o.Participant == tf.Participant })
	j.Failures = append(j.Failures, tf)
	if n := len(j.Failures); n > maxTaskFailures {
		j.Failures = slices.Delete(j.Failures, 0, n-maxTaskFailures)
	}
	return nil
}

// SanitizeReason makes a participant's reason fit to show: valid UTF-8,
// control and format characters (newlines, escapes, bidirectional
// overrides) turned into spaces, runs of spaces collapsed, at most
// maxReasonBytes.
func SanitizeReason(s string) string {
	var b strings.Builder
	space := false
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || unicode.IsSpace(r) {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
		if b.Len() > 4*maxReasonBytes {
			break // the rest is cut anyway
		}
	}
	out := b.String()
	if len(out) <= maxReasonBytes {
		return out
	}
	const ellipsis = "…"
	cut := maxReasonBytes - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(out[cut]) {
		cut--
	}
	return out[:cut] + ellipsis
}

// RefusalSummary names why cohort members refused or failed a round's
// task, grouping participants that gave the same reason: "participants
// refused: site-1, site-2: shape mismatch: …". At most three reasons and
// three names a reason are listed; "" with none.
func RefusalSummary(reasons map[string]string) string {
	if len(reasons) == 0 {
		return ""
	}
	byReason := map[string][]string{}
	for who, why := range reasons {
		byReason[why] = append(byReason[why], who)
	}
	type group struct {
		reason string
		who    []string
	}
	var groups []group
	for why, who := range byReason {
		slices.Sort(who)
		groups = append(groups, group{why, who})
	}
	// The most common reason first, then by the first participant's name.
	slices.SortFunc(groups, func(a, b group) int {
		if len(a.who) != len(b.who) {
			return len(b.who) - len(a.who)
		}
		return strings.Compare(a.who[0], b.who[0])
	})
	var parts []string
	for i, g := range groups {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("%d more reasons", len(groups)-3))
			break
		}
		names := strings.Join(g.who[:min(3, len(g.who))], ", ")
		if len(g.who) > 3 {
			names += fmt.Sprintf(" and %d more", len(g.who)-3)
		}
		parts = append(parts, names+": "+g.reason)
	}
	return "participants refused: " + strings.Join(parts, "; ")
}

// FailuresOf returns the job's recorded training failures of one round
// attempt (attempt 0: of any attempt of the round), as a reason map.
func (j *Job) FailuresOf(round, attempt uint32) map[string]string {
	out := map[string]string{}
	for _, f := range j.Failures {
		if f.Task == "train" && f.Round == round && (attempt == 0 || f.Attempt == attempt) {
			out[f.Participant] = f.Reason
		}
	}
	return out
}

func failuresToProto(fs []TaskFailure) []*pb.TaskFailure {
	var out []*pb.TaskFailure
	for _, f := range fs {
		out = append(out, &pb.TaskFailure{Participant: f.Participant, Reason: f.Reason, Round: f.Round, Attempt: f.Attempt, Task: f.Task, UnixMs: f.At})
	}
	return out
}
