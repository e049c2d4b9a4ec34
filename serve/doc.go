// Package serve serves the global models of federated jobs to partners over
// the Open Inference Protocol (KServe V2, as Triton, KServe and MLServer
// speak it): REST under /v2 and the gRPC GRPCInferenceService
// (protocol/inferencepb).
//
// A Server follows the federation: every Config.PollInterval it asks the
// coordinators (any of them, with an admin's certificate and signature, as
// `accord model pull` does) for each job's committed round count and for
// the federation's revocations. When a job has committed a newer round, it
// pulls that round's model, checks that the bytes hash to the digest the
// coordinator names, decodes it and swaps it in with an atomic pointer:
// batches that started on the old model finish on it, the next batch runs
// the new one, and no request fails for the swap. Every answer names the
// job, round and digest that made it (response parameters accord_job,
// accord_round, accord_digest; model_version is the round).
//
// Requests are batched dynamically (batcher.go): a batch closes when it
// holds Config.MaxBatch rows or Config.MaxWait has passed since its first
// request, and Config.Workers batches run at once.
//
// Clients authenticate with the federation's mutual TLS. Only certificates
// of role consumer (pki.RoleConsumer) are admitted, and none that the
// federation has revoked: revocations are read from the coordinators
// (AdminService.ListRevocations) and checked on every request, so a
// certificate revoked while its connection stays open is refused from the
// next poll on. Until the first revocation list has arrived the server
// refuses every request (it fails closed). The server's own listeners
// present an inference server's certificate (pki.RoleInference), which no
// coordinator service admits.
//
// Prometheus metrics (Config.MetricsAddr, /metrics):
// accord_serve_requests_total{protocol,code},
// accord_serve_latency_seconds{protocol}, accord_serve_batch_size{model},
// accord_serve_model_round{model}, accord_serve_swaps_total{model} and
// accord_serve_follow_errors_total.
package serve
