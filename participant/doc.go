// Package participant is the daemon that runs at each institution, next to
// its data. It only makes outbound connections: it dials a coordinator with
// mutual TLS, registers, waits for tasks on a stream, and for each task
// downloads the base model, trains or evaluates locally, and uploads its
// update or its metrics. When its coordinator goes away it reconnects, with
// backoff, to the next coordinator it knows.
package participant
