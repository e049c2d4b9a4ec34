// Package deploy holds what it takes to run Accord in production, as files
// rather than code: systemd units for a coordinator and a participant,
// example config files for their --config flag, a container recipe for the
// static binary, and a Grafana dashboard of the coordinators' metrics
// (README.md describes each). Its tests check those files against the code:
// every metric the dashboard queries is one a coordinator serves.
package deploy
