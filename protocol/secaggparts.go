package protocol

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// SecAggPartBytes is the most bytes one secure-aggregation message takes
// on the wire: a SecAggShareKeys or SecAggUnmask request, or a Task that
// relays advertisements or delivers shares. Items beyond it go in further
// parts of the same message. A complete-graph cohort of 10,000 relays each
// client 6–11 MB of advertisements (mostly certificates) and ~3 MB of
// shares: up to eleven parts and three, each well under a coordinator's
// max_recv_msg_bytes (2 MiB by default) and a participant's (gRPC's 4 MiB).
const SecAggPartBytes = 1 << 20

// MaxSecAggItemBytes bounds one advertisement or share of a task that
// comes in parts, as TaskParts takes them: an advertisement (two keys, a
// signature and a certificate of the federation CA) takes ~700–1,200
// bytes, a share ~300. With the bound on their number, it bounds what a
// coordinator can make a participant hold for one task.
const MaxSecAggItemBytes = 16 << 10

// Errors of messages sent in parts.
var (
	// ErrParts means the parts of a message do not reassemble: a part out
	// of order (one before it is missing), beyond the count, with another
	// count or other fields than the first, empty, or with more or larger
	// items than the receiver allows; or an item too large for any part.
	ErrParts = errors.New("secure aggregation parts do not reassemble")
	// ErrPartRepeated means a part came a second time.
	ErrPartRepeated = errors.New("secure aggregation part repeated")
)

// partSlack is room kept in every part for length prefixes that grow with
// its content (a Task's secagg field).
const partSlack = 16

func fieldNumber(m proto.Message, name protoreflect.Name) protowire.Number {
	return m.ProtoReflect().Descriptor().Fields().ByName(name).Number()
}

var (
	taskAdsField      = fieldNumber(&pb.SecAggTask{}, "advertisements")
	taskSharesField   = fieldNumber(&pb.SecAggTask{}, "shares")
	shareKeysField    = fieldNumber(&pb.SecAggShareKeysRequest{}, "shares")
	unmaskRevealField = fieldNumber(&pb.SecAggUnmaskRequest{}, "reveals")
)

// split deals items, in order, into runs that take at most room bytes each
// as the repeated field number field (tag, length and message, as
// proto.Size counts them). It returns one empty run for no items; an item
// that alone needs more than room is ErrParts.
func split[T proto.Message](items []T, field protowire.Number, room int) ([][]T, error) {
	if room <= 0 {
		return nil, fmt.Errorf("%w: no room for items beside the message's other fields", ErrParts)
	}
	var runs [][]T
	start, used := 0, 0
	for i, it := range items {
		n := protowire.SizeTag(field) + protowire.SizeBytes(proto.Size(it))
		if n > room {
			return nil, fmt.Errorf("%w: item %d takes %d bytes; a part has room for %d", ErrParts, i, n, room)
		}
		if used+n > room {
			runs = append(runs, items[start:i])
			start, used = i, 0
		}
		used += n
	}
	return append(runs, items[start:]), nil
}

// SplitShareKeys puts a client's encrypted shares for round into
// SecAggShareKeys requests of at most budget bytes each, numbered in the
// order they must be sent.
func SplitShareKeys(round *pb.SecAggRound, shares []*pb.SecAggShare, budget int) ([]*pb.SecAggShareKeysRequest, error) {
	head := &pb.SecAggShareKeysRequest{Round: round, Part: math.MaxUint32, Parts: math.MaxUint32}
	runs, err := split(shares, shareKeysField, budget-proto.Size(head)-partSlack)
	if err != nil {
		return nil, err
	}
	out := make([]*pb.SecAggShareKeysRequest, len(runs))
	for i, r := range runs {
		out[i] = &pb.SecAggShareKeysRequest{Round: round, Shares: r, Part: uint32(i), Parts: uint32(len(runs))}
	}
	return out, nil
}

// SplitUnmask puts a survivor's revealed shares for round into
// SecAggUnmask requests of at most budget bytes each, numbered in the order
// they must be sent.
func SplitUnmask(round *pb.SecAggRound, reveals []*pb.SecAggReveal, budget int) ([]*pb.SecAggUnmaskRequest, error) {
	head := &pb.SecAggUnmaskRequest{Round: round, Part: math.MaxUint32, Parts: math.MaxUint32}
	runs, err := split(reveals, unmaskRevealField, budget-proto.Size(head)-partSlack)
	if err != nil {
		return nil, err
	}
	out := make([]*pb.SecAggUnmaskRequest, len(runs))
	for i, r := range runs {
		out[i] = &pb.SecAggUnmaskRequest{Round: round, Reveals: r, Part: uint32(i), Parts: uint32(len(runs))}
	}
	return out, nil
}

// SplitSecAggTask returns t itself if it takes at most budget bytes or
// carries no advertisements or shares (a training task with its cohort's
// names is whole), and otherwise the Task messages that carry it in parts:
// each has t's other fields and a run of its advertisements or shares, and
// takes at most budget bytes. The parts share t's contents; t is left as
// it was.
func SplitSecAggTask(t *pb.Task, budget int) ([]*pb.Task, error) {
	st := t.GetSecagg()
	if len(st.GetAdvertisements()) == 0 && len(st.GetShares()) == 0 || proto.Size(t) <= budget {
		return []*pb.Task{t}, nil
	}
	head := taskHead(t)
	head.Secagg.Part, head.Secagg.Parts = math.MaxUint32, math.MaxUint32
	room := budget - proto.Size(head) - partSlack
	var ads [][]*pb.SecAggAdvertisement
	var shares [][]*pb.SecAggShare
	var err error
	if len(st.GetAdvertisements()) > 0 {
		if ads, err = split(st.GetAdvertisements(), taskAdsField, room); err != nil {
			return nil, err
		}
	}
	if len(st.GetShares()) > 0 {
		if shares, err = split(st.GetShares(), taskSharesField, room); err != nil {
			return nil, err
		}
	}
	n := len(ads) + len(shares)
	out := make([]*pb.Task, n)
	for i := range n {
		part := shallow(head)
		part.Secagg = shallow(head.Secagg)
		part.Secagg.Part, part.Secagg.Parts = uint32(i), uint32(n)
		if i < len(ads) {
			part.Secagg.Advertisements = ads[i]
		} else {
			part.Secagg.Shares = shares[i-len(ads)]
		}
		out[i] = part
	}
	return out, nil
}

// taskHead is t without its advertisements, shares and part number: what
// every part of t carries alike. It shares t's other fields' contents.
func taskHead(t *pb.Task) *pb.Task {
	head := shallow(t, "secagg")
	if st := t.GetSecagg(); st != nil {
		head.Secagg = shallow(st, "advertisements", "shares", "part")
	}
	return head
}

// shallow is a copy of m without the fields named skip; it shares m's
// lists and messages.
func shallow[M proto.Message](m M, skip ...protoreflect.Name) M {
	src := m.ProtoReflect()
	dst := src.New()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if !slices.Contains(skip, fd.Name()) {
			dst.Set(fd, v)
		}
		return true
	})
	return dst.Interface().(M)
}

// PartSeq follows the parts of one message as they come: in order, each
// once, all of one count. The zero value expects part 0.
type PartSeq struct{ next, parts uint32 }

// Check says whether part (of parts; 0 counts as 1: the message is whole),
// carrying items items, may come next, and whether it is the last. At most
// maxItems items may come in all, so at most that many parts, since every
// part carries one at least unless it is the only one. Check changes
// nothing: Advance notes the part once the receiver has taken its items.
func (q *PartSeq) Check(part, parts uint32, items, maxItems int) (last bool, err error) {
	parts = max(parts, 1)
	switch {
	case q.next > 0 && q.next == q.parts:
		return false, fmt.Errorf("%w: part %d after all %d parts came", ErrPartRepeated, part, q.parts)
	case part >= parts:
		return false, fmt.Errorf("%w: part %d of %d", ErrParts, part, parts)
	case q.next > 0 && parts != q.parts:
		return false, fmt.Errorf("%w: part %d says %d parts; part 0 said %d", ErrParts, part, parts, q.parts)
	case part < q.next:
		return false, fmt.Errorf("%w: part %d of %d came again", ErrPartRepeated, part, parts)
	case part > q.next:
		return false, fmt.Errorf("%w: part %d of %d came before part %d", ErrParts, part, parts, q.next)
	case parts > 1 && items == 0:
		return false, fmt.Errorf("%w: part %d of %d carries nothing", ErrParts, part, parts)
	case int64(parts) > int64(max(maxItems, 1)):
		return false, fmt.Errorf("%w: %d parts, and at most %d items may come", ErrParts, parts, maxItems)
	}
	return part == parts-1, nil
}

// Advance notes the part Check allowed.
func (q *PartSeq) Advance(parts uint32) {
	q.parts = max(parts, 1)
	q.next++
}

// TaskParts reassembles, on a participant's task stream, the tasks that
// come in parts (SplitSecAggTask). The parts of one task come in a row.
// The zero value is ready.
type TaskParts struct {
	head   *pb.Task // the first part's fields, without items
	seq    PartSeq
	ads    []*pb.SecAggAdvertisement
	shares []*pb.SecAggShare
}

// Add takes the next message m of the stream. A whole task is returned as
// is; a part is kept, and once its task's last part came the task is
// returned, whole, with every part's items in order. At most maxItems
// advertisements, and as many shares, may come in all (the receiver's
// neighbours), each of at most MaxSecAggItemBytes. A part that does not continue the task in progress (out of
// order, repeated, with other fields, or one item too many) is refused
// with an error, and that task is dropped; a whole task or a first part
// (of another task) that comes in its midst drops it too, with an error,
// and is taken.
func (a *TaskParts) Add(m *pb.Task, maxItems int) (*pb.Task, error) {
	st := m.GetSecagg()
	var dropped error
	if st.GetParts() <= 1 && st.GetPart() == 0 {
		if a.head != nil {
			dropped = a.drop(fmt.Errorf("%w: a whole %v task came", ErrParts, m.GetKind()))
		}
		return m, dropped
	}
	head := taskHead(m)
	if a.head != nil && !proto.Equal(head, a.head) {
		dropped = a.drop(fmt.Errorf("%w: part %d of a %v task differs from part 0 in other fields than its items", ErrParts, st.GetPart(), m.GetKind()))
		if st.GetPart() != 0 {
			return nil, dropped
		}
	}
	last, err := a.seq.Check(st.GetPart(), st.GetParts(), len(st.GetAdvertisements())+len(st.GetShares()), maxItems)
	if err != nil {
		return nil, errors.Join(dropped, a.drop(err))
	}
	if len(a.ads)+len(st.GetAdvertisements()) > maxItems || len(a.shares)+len(st.GetShares()) > maxItems {
		return nil, errors.Join(dropped, a.drop(fmt.Errorf("%w: more than %d advertisements or shares", ErrParts, maxItems)))
	}
	if err := itemsFit(st.GetAdvertisements()); err != nil {
		return nil, errors.Join(dropped, a.drop(err))
	}
	if err := itemsFit(st.GetShares()); err != nil {
		return nil, errors.Join(dropped, a.drop(err))
	}
	if a.head == nil {
		a.head = head
	}
	a.ads = append(a.ads, st.GetAdvertisements()...)
	a.shares = append(a.shares, st.GetShares()...)
	a.seq.Advance(st.GetParts())
	if !last {
		return nil, dropped
	}
	t := a.head
	t.Secagg.Advertisements, t.Secagg.Shares, t.Secagg.Part, t.Secagg.Parts = a.ads, a.shares, 0, 0
	*a = TaskParts{}
	return t, dropped
}

// itemsFit refuses an item larger than MaxSecAggItemBytes.
func itemsFit[T proto.Message](items []T) error {
	for i, it := range items {
		if n := proto.Size(it); n > MaxSecAggItemBytes {
			return fmt.Errorf("%w: item %d of a part takes %d bytes; at most %d", ErrParts, i, n, MaxSecAggItemBytes)
		}
	}
	return nil
}

// drop forgets the task in progress, if any, and returns why, naming it.
func (a *TaskParts) drop(why error) error {
	if a.head == nil {
		*a = TaskParts{}
		return why
	}
	h := a.head
	err := fmt.Errorf("%v task of job %s round %d attempt %d dropped after %d of %d parts: %w",
		h.GetKind(), h.GetJobId(), h.GetRound(), h.GetAttempt(), a.seq.next, a.seq.parts, why)
	*a = TaskParts{}
	return err
}
