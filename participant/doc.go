// Package participant is the daemon that runs at each institution, next to
// its data. It only makes outbound connections: it dials a coordinator with
// mutual TLS, registers, waits for tasks on a stream, and for each task
// downloads the base model, trains or evaluates locally, and uploads its
// update or its metrics. When its coordinator goes away it reconnects, with
// backoff, to the next coordinator it knows.
//
// It trusts only servers whose certificate is a coordinator's (pki.ClientTLS),
// and it decides for itself which jobs it takes part in: a site Policy,
// enforced here where the data is, refuses the tasks of jobs it does not
// accept, before any model is downloaded or any example read, and tells the
// coordinators why (RefuseTask).
//
// It registers the shape of its data (features and classes), so that the
// coordinators can refuse a job no participant could train. A task it
// cannot do all the same — the model does not fit its data, local training
// or evaluation fails — is reported with its reason (ReportTaskFailure), so
// the round does not wait for it and operators see why in 'accord job show'.
package participant
