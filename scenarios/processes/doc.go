// Package processes holds the tests that run the built accord binary as real
// processes on loopback — three coordinators, ten participants — and kill
// the Raft leader with SIGKILL during a job. `make test` runs a short form;
// `make scenarios` runs the full one (ACCORD_PROCESS_FULL=1).
package processes
