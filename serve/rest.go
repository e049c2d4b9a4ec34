package serve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// The REST endpoints of the Open Inference Protocol (KServe V2).

// tensorMeta describes a tensor in model metadata.
type tensorMeta struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

// modelMeta is GET /v2/models/{name}'s answer.
type modelMeta struct {
	Name     string       `json:"name"`
	Versions []string     `json:"versions"`
	Platform string       `json:"platform"`
	Inputs   []tensorMeta `json:"inputs"`
	Outputs  []tensorMeta `json:"outputs"`
	// Parameters name the job, round and digest served.
	Parameters map[string]any `json:"parameters,omitempty"`
}

// inferInput is one input tensor of an infer request. Data is row-major,
// flat or nested.
type inferInput struct {
	Name     string          `json:"name"`
	Shape    []int64         `json:"shape"`
	Datatype string          `json:"datatype"`
	Data     json.RawMessage `json:"data"`
}

type inferRequest struct {
	ID      string       `json:"id,omitempty"`
	Inputs  []inferInput `json:"inputs"`
	Outputs []struct {
		Name string `json:"name"`
	} `json:"outputs,omitempty"`
}

type inferOutput struct {
	Name     string    `json:"name"`
	Shape    []int64   `json:"shape"`
	Datatype string    `json:"datatype"`
	Data     []float32 `json:"data"`
}

type inferResponse struct {
	ModelName    string         `json:"model_name"`
	ModelVersion string         `json:"model_version"`
	ID           string         `json:"id,omitempty"`
	Outputs      []inferOutput  `json:"outputs"`
	Parameters   map[string]any `json:"parameters"`
}

// Names and types of the one input and output tensor.
const (
	inputName  = "input"
	outputName = "output"
	fp32       = "FP32"
	platform   = "accord"
)

func (s *Server) restHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/health/live", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /v2/health/ready", func(w http.ResponseWriter, r *http.Request) {
		if !s.Ready() {
			writeError(w, fmt.Errorf("%w: waiting for revocations or a committed model", ErrNotReady))
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("GET /v2", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"name": "accord", "version": "2", "extensions": []string{}})
	})
	meta := func(w http.ResponseWriter, r *http.Request) {
		_, m, err := s.endpointFor(r.PathValue("name"), r.PathValue("version"))
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, metadata(r.PathValue("name"), m))
	}
	mux.HandleFunc("GET /v2/models/{name}", meta)
	mux.HandleFunc("GET /v2/models/{name}/versions/{version}", meta)
	ready := func(w http.ResponseWriter, r *http.Request) {
		if _, _, err := s.endpointFor(r.PathValue("name"), r.PathValue("version")); err != nil {
			writeError(w, err)
			return
		}
		w.WriteHeader(http.StatusOK)
	}
	mux.HandleFunc("GET /v2/models/{name}/ready", ready)
	mux.HandleFunc("GET /v2/models/{name}/versions/{version}/ready", ready)
	mux.HandleFunc("POST /v2/models/{name}/infer", s.restInfer)
	mux.HandleFunc("POST /v2/models/{name}/versions/{version}/infer", s.restInfer)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.authorize(r.TLS); err != nil {
			s.log.Debug("serve: request refused", "remote", r.RemoteAddr, "err", err)
			writeError(w, err)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// metadata describes a loaded model.
func metadata(name string, m *loaded) modelMeta {
	return modelMeta{
		Name: name, Versions: []string{strconv.FormatUint(uint64(m.round), 10)}, Platform: platform,
		Inputs:     []tensorMeta{{Name: inputName, Datatype: fp32, Shape: []int64{-1, int64(m.inputs)}}},
		Outputs:    []tensorMeta{{Name: outputName, Datatype: fp32, Shape: []int64{-1, int64(m.classes)}}},
		Parameters: map[string]any{"accord_job": m.job, "accord_round": m.round, "accord_digest": m.digest, "accord_model": m.spec},
	}
}

func (s *Server) restInfer(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	code := http.StatusOK
	defer func() {
		s.metrics.requests.WithLabelValues("rest", strconv.Itoa(code)).Inc()
		s.metrics.latency.WithLabelValues("rest").Observe(time.Since(start).Seconds())
	}()
	fail := func(err error) {
		code = httpCode(err)
		writeError(w, err)
	}
	ep, m, err := s.endpointFor(r.PathValue("name"), r.PathValue("version"))
	if err != nil {
		fail(err)
		return
	}
	var req inferRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err := dec.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			fail(fmt.Errorf("%w: body larger than %d bytes", ErrBadRequest, s.cfg.MaxBodyBytes))
			return
		}
		fail(fmt.Errorf("%w: body is not an infer request: %v", ErrBadRequest, err))
		return
	}
	if len(req.Inputs) != 1 {
		fail(fmt.Errorf("%w: %d inputs: want one, %q", ErrBadRequest, len(req.Inputs), inputName))
		return
	}
	for _, o := range req.Outputs {
		if o.Name != outputName {
			fail(fmt.Errorf("%w: output %q requested: the model has one output, %q", ErrBadRequest, o.Name, outputName))
			return
		}
	}
	in := req.Inputs[0]
	if in.Name != inputName {
		fail(fmt.Errorf("%w: input %q: the model's input is %q", ErrBadRequest, in.Name, inputName))
		return
	}
	if in.Datatype != fp32 {
		fail(fmt.Errorf("%w: input datatype %q: want %s", ErrBadRequest, in.Datatype, fp32))
		return
	}
	x, err := decodeData(in.Data, s.cfg.MaxRows*m.inputs)
	if err != nil {
		fail(err)
		return
	}
	res, err := s.infer(r.Context(), ep, m, x, in.Shape)
	if err != nil {
		fail(err)
		return
	}
	rows := int64(len(res.out) / res.model.classes)
	writeJSON(w, http.StatusOK, inferResponse{
		ModelName: ep.name, ModelVersion: strconv.FormatUint(uint64(res.model.round), 10), ID: req.ID,
		Outputs:    []inferOutput{{Name: outputName, Shape: []int64{rows, int64(res.model.classes)}, Datatype: fp32, Data: res.out}},
		Parameters: map[string]any{"accord_job": res.model.job, "accord_round": res.model.round, "accord_digest": res.model.digest},
	})
}

// decodeData reads a tensor's data: a flat array of numbers, or arrays
// nested row by row; at most limit values.
func decodeData(raw json.RawMessage, limit int) ([]float32, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '[' {
		return nil, fmt.Errorf("%w: input data must be an array of numbers", ErrBadRequest)
	}
	var flat []float32
	if err := json.Unmarshal(raw, &flat); err == nil {
		if len(flat) > limit {
			return nil, fmt.Errorf("%w: %d input values: at most %d", ErrBadRequest, len(flat), limit)
		}
		return flat, nil
	}
	var nested []json.RawMessage
	if err := json.Unmarshal(raw, &nested); err != nil {
		return nil, fmt.Errorf("%w: input data: %v", ErrBadRequest, err)
	}
	out := make([]float32, 0, len(nested))
	for _, part := range nested {
		v, err := decodeData(part, limit-len(out))
		if err != nil {
			return nil, err
		}
		out = append(out, v...)
	}
	return out, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers with the protocol's error body, {"error": "..."}.
func writeError(w http.ResponseWriter, err error) {
	writeJSON(w, httpCode(err), map[string]string{"error": err.Error()})
}
