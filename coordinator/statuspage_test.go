package coordinator_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/accord-fl/accord/coordinator"
	"github.com/accord-fl/accord/coordinator/coordtest"
	"github.com/accord-fl/accord/pki"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

const testStatusToken = "3f7c1e9a0b2d4c6e8f1a3b5c7d9e0f21"

// withStatusPage serves each coordinator's status page on a free port,
// with the bearer token in tokenFile if it is not "".
func withStatusPage(tokenFile string) func(*coordinator.Config) {
	return func(cfg *coordinator.Config) {
		cfg.HTTPAddr, cfg.StatusTokenFile = "127.0.0.1:0", tokenFile
	}
}

// writeToken writes a token file into a temporary folder.
func writeToken(t *testing.T, token string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "status.token")
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// statusClient is an HTTPS client that trusts the federation CA and
// presents cert (none if nil).
func statusClient(tc *coordtest.Cluster, cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{RootCAs: tc.CA.Pool(), MinVersion: tls.VersionTLS13}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

// statusGet sends one request to a status page and returns its code, its
// headers and its body; err is a transport error (a refused handshake).
func statusGet(t *testing.T, cl *http.Client, method, url, auth string) (int, http.Header, string, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := cl.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b), nil
}

// TestStatusPageAccess: the status page is HTTPS with the federation's
// mutual TLS; a certificate of any role reads it, a bearer token from the
// token file does too, a wrong token or none is 401, a certificate of
// another CA or a revoked one is refused at the handshake, and it is
// read-only (405). Without a token file, a client with no certificate
// cannot even complete the handshake.
func TestStatusPageAccess(t *testing.T) {
	tc := coordtest.NewCluster(t, 1, withStatusPage(writeToken(t, testStatusToken)))
	tc.Leader(5 * time.Second)
	base := "https://" + tc.Nodes[0].StatusAddr()
	admin := tc.AdminCert("ops", "org1")
	participantCert, err := tc.CA.Issue(pki.Identity{Role: pki.RoleParticipant, Name: "pz", Organization: "org1"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.NewCA("another federation")
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := other.Issue(pki.Identity{Role: pki.RoleAdmin, Name: "ops", Organization: "org1"})
	if err != nil {
		t.Fatal(err)
	}
	noCert := statusClient(tc, nil)
	// Go's client offers no certificate the server's CA list does not
	// name; this one insists on showing the stranger's.
	insisting := statusClient(tc, nil)
	insisting.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &stranger, nil
	}
	bearer := "Bearer " + testStatusToken

	cases := []struct {
		name       string
		client     *http.Client
		method     string
		path, auth string
		wantCode   int
		wantErr    bool   // the handshake fails
		wantInBody string // for a 200
	}{
		{"admin certificate", statusClient(tc, &admin), "GET", "/api/status", "", 200, false, `"answered_by":"c1"`},
		{"participant certificate", statusClient(tc, &participantCert), "GET", "/api/status", "", 200, false, `"members"`},
		{"bearer token", noCert, "GET", "/api/status", bearer, 200, false, `"raft"`},
		{"bearer scheme in lower case", noCert, "GET", "/api/status", "bearer " + testStatusToken, 200, false, `"jobs"`},
		{"wrong token", noCert, "GET", "/api/status", "Bearer " + strings.Repeat("0", len(testStatusToken)), 401, false, ""},
		{"token prefix", noCert, "GET", "/api/status", bearer[:len(bearer)-1], 401, false, ""},
		{"basic auth", noCert, "GET", "/api/status", "Basic b3BzOnNlY3JldA==", 401, false, ""},
		{"no credentials", noCert, "GET", "/", "", 401, false, ""},
		{"another federation's certificate", insisting, "GET", "/api/status", bearer, 0, true, ""},
		{"POST", noCert, "POST", "/api/status", bearer, 405, false, ""},
		{"DELETE with a certificate", statusClient(tc, &admin), "DELETE", "/", "", 405, false, ""},
		{"HEAD", noCert, "HEAD", "/", bearer, 200, false, ""},
		{"overview page", noCert, "GET", "/", bearer, 200, false, `src="/static/app.js"`},
		{"job page", noCert, "GET", "/jobs/job-0123456789ab", bearer, 200, false, `data-page="job"`},
		{"script", noCert, "GET", "/static/app.js", bearer, 200, false, "renderOverview"},
		{"unknown job", noCert, "GET", "/api/jobs/job-0123456789ab", bearer, 404, false, ""},
		{"unknown path", noCert, "GET", "/nothing", bearer, 404, false, ""},
		{"no listing of the assets", noCert, "GET", "/static/", bearer, 404, false, ""},
	}
	for _, c := range cases {
		code, hdr, body, err := statusGet(t, c.client, c.method, base+c.path, c.auth)
		switch {
		case c.wantErr:
			if err == nil {
				t.Errorf("%s: got %d; want the handshake refused", c.name, code)
			}
			continue
		case err != nil:
			t.Errorf("%s: %v; want %d", c.name, err, c.wantCode)
			continue
		case code != c.wantCode:
			t.Errorf("%s: got %d (%s); want %d", c.name, code, strings.TrimSpace(body), c.wantCode)
			continue
		}
		if c.wantInBody != "" && !strings.Contains(body, c.wantInBody) {
			t.Errorf("%s: body lacks %q:\n%.400s", c.name, c.wantInBody, body)
		}
		if got := hdr.Get("Content-Security-Policy"); !strings.Contains(got, "script-src 'self'") {
			t.Errorf("%s: Content-Security-Policy %q; want scripts from this server only", c.name, got)
		}
		switch code {
		case 401:
			if !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s: WWW-Authenticate %q; want a Bearer challenge", c.name, hdr.Get("WWW-Authenticate"))
			}
		case 405:
			if hdr.Get("Allow") != "GET, HEAD" {
				t.Errorf("%s: Allow %q; want GET, HEAD", c.name, hdr.Get("Allow"))
			}
		}
	}

	// The JSON says who answered and what it knows.
	_, _, body, err := statusGet(t, noCert, "GET", base+"/api/status", bearer)
	if err != nil {
		t.Fatal(err)
	}
	var st coordinator.StatusView
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/api/status: %v\n%s", err, body)
	}
	if st.AnsweredBy != "c1" || st.Raft.State != "Leader" || st.Raft.Leader != "c1" || len(st.Members) != 1 || st.Members[0].RaftRole != "leader" {
		t.Errorf("/api/status: answered by %q, raft %+v, members %+v; want c1 leading alone", st.AnsweredBy, st.Raft, st.Members)
	}

	// A participant's certificate, revoked, is refused: on its open
	// connection at the next request, and at the handshake of a new one.
	leaf, err := x509.ParseCertificate(participantCert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	serial := pki.SerialOf(leaf)
	pc := statusClient(tc, &participantCert)
	if code, _, _, err := statusGet(t, pc, "GET", base+"/api/status", ""); err != nil || code != 200 {
		t.Fatalf("participant before its revocation: %d, %v; want 200", code, err)
	}
	if _, err := tc.AdminOf(0, "ops", "org1").Revoke(t.Context(), &pb.RevokeRequest{Serial: serial, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); !tc.Nodes[0].FSM().IsRevoked(serial); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the revocation was not applied")
		}
	}
	if code, _, _, err := statusGet(t, pc, "GET", base+"/api/status", ""); err == nil && code != 401 {
		t.Errorf("revoked participant on its open connection: %d; want 401", code)
	}
	if code, _, _, err := statusGet(t, statusClient(tc, &participantCert), "GET", base+"/api/status", ""); err == nil {
		t.Errorf("revoked participant on a new connection: %d; want the handshake refused", code)
	}
}

// TestStatusPageWithoutToken: without a token file, the status page
// requires a client certificate at the handshake; a bearer token does not
// stand in for one.
func TestStatusPageWithoutToken(t *testing.T) {
	tc := coordtest.NewCluster(t, 1, withStatusPage(""))
	tc.Leader(5 * time.Second)
	base := "https://" + tc.Nodes[0].StatusAddr()
	if code, _, _, err := statusGet(t, statusClient(tc, nil), "GET", base+"/api/status", "Bearer "+testStatusToken); err == nil {
		t.Errorf("no certificate, no token file: got %d; want the handshake refused", code)
	}
	admin := tc.AdminCert("ops", "org1")
	if code, _, body, err := statusGet(t, statusClient(tc, &admin), "GET", base+"/api/status", ""); err != nil || code != 200 {
		t.Errorf("admin certificate: %d, %v (%s); want 200", code, err, body)
	}
}

// TestStatusTokenFile: a token file needs a status page, and a token too
// short to resist guessing is refused at start-up.
func TestStatusTokenFile(t *testing.T) {
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue(pki.Identity{Role: pki.RoleCoordinator, Name: "c1", Organization: "org1"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := coordtest.Config("c1", t.TempDir(), cert, ca)
	cfg.Bootstrap = true
	cfg.StatusTokenFile = writeToken(t, testStatusToken)
	if _, err := coordinator.New(cfg); err == nil || !strings.Contains(err.Error(), "HTTPAddr") {
		t.Errorf("a token file without HTTPAddr: %v; want an error naming HTTPAddr", err)
	}
	for _, tok := range []string{"short", "two words-" + testStatusToken} {
		cfg.HTTPAddr, cfg.StatusTokenFile = "127.0.0.1:0", writeToken(t, tok)
		c, err := coordinator.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(t.Context()); err == nil || !strings.Contains(err.Error(), "status token file") {
			t.Errorf("token %q: Start: %v; want an error about the status token file", tok, err)
		}
		c.Shutdown()
	}
}

// TestProgress: a job's progress is the larger of its share of rounds and
// its share of the way from the initial accuracy to the target.
func TestProgress(t *testing.T) {
	cases := []struct {
		name                  string
		committed, limit      uint32
		initial, last, target float64
		want                  float64
	}{
		{"rounds only", 5, 20, 0.3, 0.8, 0, 0.25},
		{"accuracy ahead of rounds", 2, 20, 0.3, 0.6, 0.9, 0.5},
		{"rounds ahead of accuracy", 15, 20, 0.3, 0.4, 0.9, 0.75},
		{"target reached", 3, 20, 0.3, 0.95, 0.9, 1},
		{"no evaluation yet", 0, 20, 0, 0, 0.9, 0},
		{"initial above target", 1, 10, 0.95, 0.5, 0.9, 0.5 / 0.9},
		{"no limit", 7, 0, 0, 0, 0, 0},
	}
	for _, c := range cases {
		if got := coordinator.Progress(c.committed, c.limit, c.initial, c.last, c.target); got < c.want-1e-9 || got > c.want+1e-9 {
			t.Errorf("%s: Progress(%d, %d, %g, %g, %g) = %g; want %g", c.name, c.committed, c.limit, c.initial, c.last, c.target, got, c.want)
		}
	}
}
