package protocol

import (
	"crypto/rand"
	"errors"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/accord-fl/accord/aggregate/secagg"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// cohort is the size of the complete-graph cohort the chunking is tested
// at: the target, and secagg.MaxClients.
const cohort = 10_000

// Sizes of synthetic items, at the top of what real ones take: a
// participant certificate of the federation CA (ECDSA P-256) is 500–1000
// bytes, an ECDSA signature at most 72, and an encrypted share at most 288
// (secagg's TestShareCiphertextBound).
const (
	certBytes      = 1000
	signatureBytes = 72
	shareBytes     = 288
)

// defaultMaxRecvMsgBytes is a coordinator's default gRPC message limit
// (coordinator.DefaultLimits).
const defaultMaxRecvMsgBytes = 2 << 20

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func taskOf(kind pb.TaskKind, st *pb.SecAggTask) *pb.Task {
	return &pb.Task{Kind: kind, JobId: "job-0123456789ab", Round: 7, Attempt: 2, Model: "mlp:784-200-200-10", Dataset: "mnist",
		BaseModelDigest: "sha256:" + string(make([]byte, 64)), DeadlineUnixMs: 1_800_000_000_000, JobOrganization: "hospital-a",
		JobRounds: 100, SecureAggregation: "secagg", Secagg: st}
}

// advertisements are the other clients' advertisements client 0 of a
// complete graph is sent.
func advertisements(n int) []*pb.SecAggAdvertisement {
	out := make([]*pb.SecAggAdvertisement, 0, n-1)
	for v := 1; v < n; v++ {
		out = append(out, &pb.SecAggAdvertisement{From: uint32(v), CKey: random(32), SKey: random(32), Signature: random(signatureBytes),
			Certificate: random(certBytes)})
	}
	return out
}

// shares are n−1 encrypted shares between client 0 and the others
// (toZero: addressed to client 0; else from it).
func shares(n int, toZero bool) []*pb.SecAggShare {
	out := make([]*pb.SecAggShare, 0, n-1)
	for v := 1; v < n; v++ {
		s := &pb.SecAggShare{From: 0, To: uint32(v), Ciphertext: random(shareBytes)}
		if toZero {
			s.From, s.To = uint32(v), 0
		}
		out = append(out, s)
	}
	return out
}

// reveals are a survivor's revealed shares of every client of a cohort of n.
func reveals(n int) []*pb.SecAggReveal {
	out := make([]*pb.SecAggReveal, n)
	for v := range out {
		y := make([]uint64, secagg.Limbs)
		for i := range y {
			y[i] = 1<<61 - 2 // the widest field element
		}
		out[v] = &pb.SecAggReveal{Owner: uint32(v), Kind: pb.SecAggReveal_KIND_MASK_SEED, X: uint32(n), Y: y}
	}
	return out
}

// checkSizes fails unless every message takes at most budget bytes,
// measured on the wire, and returns the largest.
func checkSizes[M proto.Message](t *testing.T, what string, parts []M, budget int) int {
	t.Helper()
	largest := 0
	for i, m := range parts {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > budget {
			t.Errorf("%s: part %d of %d takes %d bytes; want at most %d", what, i, len(parts), len(b), budget)
		}
		largest = max(largest, len(b))
	}
	return largest
}

// TestSecAggPartsCompleteGraphOf10000 splits every secure-aggregation
// message of one client of a complete-graph cohort of 10,000 — the
// share-keys task (9,999 advertisements with their certificates), its
// shares, the masked-input task delivering 9,999 shares and the unmasking
// reveals — into parts: none takes more than SecAggPartBytes, though the
// tasks and the shares whole exceed a coordinator's 2 MiB message limit,
// and the parts reassemble to exactly the messages split.
func TestSecAggPartsCompleteGraphOf10000(t *testing.T) {
	survivors := make([]uint32, cohort)
	for i := range survivors {
		survivors[i] = uint32(i)
	}
	tasks := []struct {
		name string
		task *pb.Task
	}{
		{"share-keys task", taskOf(pb.TaskKind_TASK_KIND_SECAGG_SHARE_KEYS, &pb.SecAggTask{Advertisements: advertisements(cohort)})},
		{"masked-input task", taskOf(pb.TaskKind_TASK_KIND_SECAGG_MASKED_INPUT, &pb.SecAggTask{Survivors: survivors, Shares: shares(cohort, true)})},
	}
	for _, tt := range tasks {
		whole := proto.Size(tt.task)
		if whole <= defaultMaxRecvMsgBytes {
			t.Fatalf("%s: %d bytes whole; the test wants one above the 2 MiB limit", tt.name, whole)
		}
		before := proto.Clone(tt.task)
		parts, err := SplitSecAggTask(tt.task, SecAggPartBytes)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(tt.task, before) {
			t.Fatalf("%s: splitting changed the task", tt.name)
		}
		largest := checkSizes(t, tt.name, parts, SecAggPartBytes)
		var got *pb.Task
		var a TaskParts
		for i, p := range parts {
			got, err = a.Add(p, cohort-1)
			if err != nil || (got != nil) != (i == len(parts)-1) {
				t.Fatalf("%s: part %d of %d: task %v, err %v", tt.name, i, len(parts), got != nil, err)
			}
		}
		if !proto.Equal(got, tt.task) {
			t.Errorf("%s: the reassembled task differs from the one split", tt.name)
		}
		t.Logf("%s: %d bytes whole, %d parts, the largest %d bytes", tt.name, whole, len(parts), largest)
	}

	round := &pb.SecAggRound{JobId: "job-0123456789ab", Round: 7, Attempt: 2}
	sent := shares(cohort, false)
	reqs, err := SplitShareKeys(round, sent, SecAggPartBytes)
	if err != nil {
		t.Fatal(err)
	}
	largest := checkSizes(t, "shares", reqs, SecAggPartBytes)
	whole := proto.Size(&pb.SecAggShareKeysRequest{Round: round, Shares: sent})
	if whole <= defaultMaxRecvMsgBytes {
		t.Fatalf("shares: %d bytes whole; the test wants more than the 2 MiB limit", whole)
	}
	var got []*pb.SecAggShare
	var seq PartSeq
	for i, r := range reqs {
		last, err := seq.Check(r.Part, r.Parts, len(r.Shares), cohort-1)
		if err != nil {
			t.Fatalf("shares: part %d: %v", i, err)
		}
		seq.Advance(r.Parts)
		got = append(got, r.Shares...)
		if last != (i == len(reqs)-1) || !proto.Equal(r.Round, round) {
			t.Fatalf("shares: part %d of %d: last %v, round %v", i, len(reqs), last, r.Round)
		}
	}
	if !slices.EqualFunc(got, sent, func(a, b *pb.SecAggShare) bool { return proto.Equal(a, b) }) {
		t.Error("shares: the parts' shares differ from those split")
	}
	t.Logf("shares: %d bytes whole, %d requests, the largest %d bytes", whole, len(reqs), largest)

	revealed := reveals(cohort)
	unmask, err := SplitUnmask(round, revealed, SecAggPartBytes)
	if err != nil {
		t.Fatal(err)
	}
	largest = checkSizes(t, "reveals", unmask, SecAggPartBytes)
	var back []*pb.SecAggReveal
	for _, r := range unmask {
		back = append(back, r.Reveals...)
	}
	if !slices.EqualFunc(back, revealed, func(a, b *pb.SecAggReveal) bool { return proto.Equal(a, b) }) {
		t.Error("reveals: the parts' reveals differ from those split")
	}
	t.Logf("reveals: %d bytes whole, %d requests, the largest %d bytes",
		proto.Size(&pb.SecAggUnmaskRequest{Round: round, Reveals: revealed}), len(unmask), largest)
}

// TestSplitKeepsSmallMessagesWhole: what fits is one message, and tasks
// that fit, or have no items to split, are passed on untouched.
func TestSplitKeepsSmallMessagesWhole(t *testing.T) {
	task := taskOf(pb.TaskKind_TASK_KIND_SECAGG_SHARE_KEYS, &pb.SecAggTask{Advertisements: advertisements(5)})
	parts, err := SplitSecAggTask(task, SecAggPartBytes)
	if err != nil || len(parts) != 1 || parts[0] != task {
		t.Errorf("a small task: %d parts (%v); want the task itself", len(parts), err)
	}
	train := taskOf(pb.TaskKind_TASK_KIND_TRAIN, &pb.SecAggTask{Cohort: []string{"a-long-participant-name"}})
	if parts, err := SplitSecAggTask(train, 64); err != nil || len(parts) != 1 || parts[0] != train {
		t.Errorf("a task with nothing to split: %d parts (%v); want the task itself", len(parts), err)
	}
	round := &pb.SecAggRound{JobId: "j", Round: 1, Attempt: 1}
	reqs, err := SplitShareKeys(round, nil, SecAggPartBytes)
	if err != nil || len(reqs) != 1 || reqs[0].Part != 0 || reqs[0].Parts != 1 {
		t.Errorf("no shares: %v (%v); want one request, part 0 of 1", reqs, err)
	}
}

// TestSplitRefusesOversizedItems: an item too large for any part, or a
// budget the other fields already fill, cannot be split.
func TestSplitRefusesOversizedItems(t *testing.T) {
	round := &pb.SecAggRound{JobId: "j", Round: 1, Attempt: 1}
	big := []*pb.SecAggShare{{From: 0, To: 1, Ciphertext: random(5000)}}
	if _, err := SplitShareKeys(round, big, 4096); !errors.Is(err, ErrParts) {
		t.Errorf("a 5,000-byte share in parts of 4 KiB: got %v; want ErrParts", err)
	}
	task := taskOf(pb.TaskKind_TASK_KIND_SECAGG_SHARE_KEYS, &pb.SecAggTask{Advertisements: advertisements(5)})
	if _, err := SplitSecAggTask(task, 64); !errors.Is(err, ErrParts) {
		t.Errorf("a task in parts of 64 bytes: got %v; want ErrParts", err)
	}
}

// TestTaskPartsRefusesBadSequences feeds TaskParts sequences of a task's
// parts that are missing one, repeat one, go beyond the count, change it or
// other fields, carry nothing or too many items: each is refused, the task
// dropped, and a good sequence after it reassembles.
func TestTaskPartsRefusesBadSequences(t *testing.T) {
	task := taskOf(pb.TaskKind_TASK_KIND_SECAGG_SHARE_KEYS, &pb.SecAggTask{Advertisements: advertisements(40)})
	parts, err := SplitSecAggTask(task, 12<<10)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) < 4 {
		t.Fatalf("%d parts; the test wants at least 4", len(parts))
	}
	const maxItems = 39
	edit := func(i int, change func(st *pb.SecAggTask)) *pb.Task {
		m := proto.Clone(parts[i]).(*pb.Task)
		change(m.Secagg)
		return m
	}
	otherRound := proto.Clone(parts[1]).(*pb.Task)
	otherRound.Round++
	whole := taskOf(pb.TaskKind_TASK_KIND_SECAGG_UNMASK, &pb.SecAggTask{Survivors: []uint32{0, 1, 2}})
	tests := []struct {
		name     string
		seq      []*pb.Task
		maxItems int
		want     error
		// gotLast says the last message is returned (a whole task).
		gotLast bool
	}{
		{"a missing part", []*pb.Task{parts[0], parts[2]}, maxItems, ErrParts, false},
		{"a repeated part", []*pb.Task{parts[0], parts[1], parts[1]}, maxItems, ErrPartRepeated, false},
		{"a part beyond the count", []*pb.Task{parts[0], edit(1, func(st *pb.SecAggTask) { st.Part = st.Parts })}, maxItems, ErrParts, false},
		{"another count", []*pb.Task{parts[0], edit(1, func(st *pb.SecAggTask) { st.Parts++ })}, maxItems, ErrParts, false},
		{"other fields", []*pb.Task{parts[0], otherRound}, maxItems, ErrParts, false},
		{"an empty part", []*pb.Task{parts[0], edit(1, func(st *pb.SecAggTask) { st.Advertisements = nil })}, maxItems, ErrParts, false},
		{"more items than neighbours", parts, 20, ErrParts, false},
		{"more parts than items could fill", parts[:1], len(parts) - 1, ErrParts, false},
		{"an oversized item", []*pb.Task{parts[0], edit(1, func(st *pb.SecAggTask) {
			st.Advertisements[0].Certificate = make([]byte, MaxSecAggItemBytes)
		})}, maxItems, ErrParts, false},
		{"a first part that is not part 0", parts[1:2], maxItems, ErrParts, false},
		{"a whole task amid the parts", []*pb.Task{parts[0], parts[1], whole}, maxItems, ErrParts, true},
	}
	for _, tt := range tests {
		var a TaskParts
		var got *pb.Task
		var err error
		for _, m := range tt.seq {
			if got, err = a.Add(m, tt.maxItems); err != nil {
				break
			}
		}
		switch {
		case !errors.Is(err, tt.want):
			t.Errorf("%s: got %v; want %v", tt.name, err, tt.want)
		case tt.gotLast && got != tt.seq[len(tt.seq)-1], !tt.gotLast && got != nil:
			t.Errorf("%s: returned %v; want the whole task: %v", tt.name, got, tt.gotLast)
		default:
			t.Logf("%s: %v", tt.name, err)
		}
		// The task in progress was dropped: the whole sequence again
		// reassembles.
		for i, m := range parts {
			if got, err = a.Add(m, maxItems); err != nil || (got != nil) != (i == len(parts)-1) {
				t.Fatalf("%s, then a good sequence: part %d: %v, %v", tt.name, i, got != nil, err)
			}
		}
		if !proto.Equal(got, task) {
			t.Errorf("%s, then a good sequence: the task differs", tt.name)
		}
	}
}

// TestPartSeq checks the order rules the coordinator applies to a client's
// requests, without items.
func TestPartSeq(t *testing.T) {
	type step struct {
		part, parts uint32
		items       int
		want        error
		last        bool
	}
	tests := []struct {
		name     string
		maxItems int
		steps    []step
	}{
		{"whole (parts 0, an older client)", 5, []step{{0, 0, 3, nil, true}, {0, 0, 3, ErrPartRepeated, false}}},
		{"whole with no items", 5, []step{{0, 1, 0, nil, true}}},
		{"three parts in order", 5, []step{{0, 3, 2, nil, false}, {1, 3, 2, nil, false}, {2, 3, 1, nil, true}, {2, 3, 1, ErrPartRepeated, false}}},
		{"a missing part", 5, []step{{0, 3, 2, nil, false}, {2, 3, 2, ErrParts, false}, {1, 3, 2, nil, false}}},
		{"a repeated part", 5, []step{{0, 3, 2, nil, false}, {0, 3, 2, ErrPartRepeated, false}}},
		{"beyond the count", 5, []step{{3, 3, 1, ErrParts, false}}},
		{"another count", 5, []step{{0, 3, 2, nil, false}, {1, 4, 2, ErrParts, false}}},
		{"an empty part", 5, []step{{0, 3, 0, ErrParts, false}}},
		{"more parts than items allowed", 5, []step{{0, 6, 1, ErrParts, false}}},
	}
	for _, tt := range tests {
		var q PartSeq
		for i, s := range tt.steps {
			last, err := q.Check(s.part, s.parts, s.items, tt.maxItems)
			if !errors.Is(err, s.want) || (err == nil) != (s.want == nil) {
				t.Errorf("%s, step %d: got %v; want %v", tt.name, i, err, s.want)
				continue
			}
			if last != s.last {
				t.Errorf("%s, step %d: last %v; want %v", tt.name, i, last, s.last)
			}
			if err == nil {
				q.Advance(s.parts)
			}
		}
	}
}
