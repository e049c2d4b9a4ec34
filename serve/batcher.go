package serve

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// A request is one client's rows waiting for a batch.
type request struct {
	x    []float32
	rows int
	done chan result // buffered: the batch never blocks on a client gone
}

// result is a request's answer: its rows of output and the model that made
// them.
type result struct {
	out   []float32
	model *loaded
	err   error
}

// batcher gathers requests for one model into batches and runs them on
// workers. Concurrency: submit is called by any number of handlers; run
// and stop by the owning Server, once each.
type batcher struct {
	maxBatch int
	maxWait  time.Duration
	workers  int
	maxQueue int64
	// current returns the model to run a batch on, read when the batch
	// starts: a swap takes effect from the next batch.
	current func() *loaded
	// observe records a batch's size.
	observe func(rows int)

	queue  chan *request
	queued atomic.Int64 // rows in queue
	stop   chan struct{}
	wg     sync.WaitGroup
}

func newBatcher(maxBatch int, maxWait time.Duration, workers, maxQueueRows int, current func() *loaded, observe func(int)) *batcher {
	return &batcher{
		maxBatch: maxBatch, maxWait: maxWait, workers: workers, maxQueue: int64(maxQueueRows),
		current: current, observe: observe,
		queue: make(chan *request, maxQueueRows), stop: make(chan struct{}),
	}
}

// start runs the collector and the workers until close.
func (b *batcher) start() {
	work := make(chan []*request)
	for range b.workers {
		b.wg.Go(func() {
			for batch := range work {
				b.runBatch(batch)
			}
		})
	}
	b.wg.Go(func() {
		defer close(work)
		b.collect(work)
	})
}

// close stops taking batches, fails the requests still queued and waits
// for the batches running to finish.
func (b *batcher) close() {
	close(b.stop)
	b.wg.Wait()
	for {
		select {
		case r := <-b.queue:
			r.done <- result{err: ErrClosed}
		default:
			return
		}
	}
}

// submit queues rows×features values and waits for their output.
func (b *batcher) submit(ctx context.Context, x []float32, rows int) result {
	if n := b.queued.Add(int64(rows)); n > b.maxQueue {
		b.queued.Add(-int64(rows))
		return result{err: fmt.Errorf("%w: %d rows already wait for a batch", ErrNotReady, n-int64(rows))}
	}
	r := &request{x: x, rows: rows, done: make(chan result, 1)}
	select {
	case b.queue <- r:
	case <-b.stop:
		b.queued.Add(-int64(rows))
		return result{err: ErrClosed}
	}
	select {
	case res := <-r.done:
		return res
	case <-ctx.Done():
		return result{err: ctx.Err()}
	}
}

// collect forms batches: a batch opens with the first request, takes
// every request queued behind it and those that arrive within maxWait,
// and closes at maxBatch rows. A request that would overflow a batch
// opens the next one; a request larger than maxBatch is a batch alone.
func (b *batcher) collect(work chan<- []*request) {
	var carry *request
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		first := carry
		carry = nil
		if first == nil {
			select {
			case first = <-b.queue:
			case <-b.stop:
				return
			}
		}
		batch, rows := []*request{first}, first.rows
		if b.maxWait > 0 {
			timer.Reset(b.maxWait)
		}
	gather:
		for rows < b.maxBatch {
			var r *request
			if b.maxWait > 0 {
				select {
				case r = <-b.queue:
				case <-timer.C:
					break gather
				case <-b.stop:
					break gather
				}
			} else {
				select {
				case r = <-b.queue:
				default:
					break gather
				}
			}
			if rows+r.rows > b.maxBatch {
				carry = r
				break
			}
			batch, rows = append(batch, r), rows+r.rows
		}
		timer.Stop()
		select {
		case work <- batch:
		case <-b.stop:
			for _, r := range batch {
				b.queued.Add(-int64(r.rows))
				r.done <- result{err: ErrClosed}
			}
			if carry != nil {
				b.queued.Add(-int64(carry.rows))
				carry.done <- result{err: ErrClosed}
			}
			return
		}
	}
}

// runBatch runs one batch on the current model and answers its requests.
func (b *batcher) runBatch(batch []*request) {
	rows := 0
	for _, r := range batch {
		rows += r.rows
	}
	b.queued.Add(-int64(rows))
	m := b.current()
	if m == nil {
		for _, r := range batch {
			r.done <- result{err: fmt.Errorf("%w: no committed model yet", ErrNotReady)}
		}
		return
	}
	b.observe(rows)
	x := batch[0].x
	if len(batch) > 1 {
		x = make([]float32, 0, rows*m.inputs)
		for _, r := range batch {
			x = append(x, r.x...)
		}
	}
	out, err := m.pred.Predict(x, rows)
	if err != nil {
		for _, r := range batch {
			r.done <- result{err: fmt.Errorf("%w: %w", ErrBadRequest, err)}
		}
		return
	}
	classes := m.classes
	off := 0
	for _, r := range batch {
		r.done <- result{out: out[off*classes : (off+r.rows)*classes : (off+r.rows)*classes], model: m}
		off += r.rows
	}
}
