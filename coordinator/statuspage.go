package coordinator

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/accord-fl/accord/coordinator/state"
	"github.com/accord-fl/accord/netlimit"
	"github.com/accord-fl/accord/pki"
)

// The status page: a read-only web view of what this coordinator knows
// (members and Raft roles, jobs and their rounds, participants by region),
// served over HTTPS at Config.HTTPAddr. See DESIGN.md, "The status page".

//go:embed status
var statusAssets embed.FS

// Status page server limits. The page and its API are small: a browser
// polls /api/status every few seconds.
const (
	statusReadHeaderTimeout = 5 * time.Second // also bounds the TLS handshake
	statusReadTimeout       = 10 * time.Second
	statusWriteTimeout      = 30 * time.Second
	statusIdleTimeout       = 2 * time.Minute
	statusMaxHeaderBytes    = 16 << 10
	// minStatusTokenLen is the shortest bearer token accepted: 16
	// characters (e.g. 32 hex digits from `openssl rand -hex 16` or more).
	minStatusTokenLen = 16
)

// statusHeaders are sent with every answer: no script, style or fetch
// from anywhere but this server, no framing, no caching of live data.
var statusHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
	"X-Content-Type-Options":    "nosniff",
	"X-Frame-Options":           "DENY",
	"Referrer-Policy":           "no-referrer",
	"Cache-Control":             "no-store",
	"Strict-Transport-Security": "max-age=31536000",
}

// loadStatusToken reads the bearer token from its file: the file's
// content without surrounding white space.
func loadStatusToken(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("status token file: %w", err)
	}
	tok := bytes.TrimSpace(b)
	if len(tok) < minStatusTokenLen {
		return nil, fmt.Errorf("status token file %s: the token has %d characters; want at least %d (e.g. `openssl rand -hex 32 > %s`)",
			path, len(tok), minStatusTokenLen, path)
	}
	if bytes.ContainsAny(tok, " \t\r\n") {
		return nil, fmt.Errorf("status token file %s: the token must be one word", path)
	}
	return tok, nil
}

// startStatusPage starts the HTTPS server of the status page.
func (c *Coordinator) startStatusPage() error {
	var tokenHash *[sha256.Size]byte
	if c.cfg.StatusTokenFile != "" {
		tok, err := loadStatusToken(c.cfg.StatusTokenFile)
		if err != nil {
			return err
		}
		h := sha256.Sum256(tok)
		tokenHash = &h
		if fi, err := os.Stat(c.cfg.StatusTokenFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
			c.log.Warn("the status token file can be read by other users of this machine; chmod 600 it",
				"file", c.cfg.StatusTokenFile, "mode", fi.Mode().Perm().String())
		}
	}
	tlsCfg := pki.ServerTLS(c.cfg.Cert, c.cfg.CA)
	if tokenHash != nil {
		// A client without a certificate may still show a bearer token;
		// a certificate, if shown, must chain to the federation CA.
		tlsCfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	tlsCfg.VerifyConnection = c.refuseRevoked
	ln, err := net.Listen("tcp", c.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("status page listener on %s: %w", c.cfg.HTTPAddr, err)
	}
	c.statusAddr = ln.Addr().String()
	c.statusSrv = &http.Server{
		Handler:           c.statusHandler(tokenHash),
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: statusReadHeaderTimeout, ReadTimeout: statusReadTimeout,
		WriteTimeout: statusWriteTimeout, IdleTimeout: statusIdleTimeout, MaxHeaderBytes: statusMaxHeaderBytes,
		// Handshakes that fail (scanners, clients without a certificate)
		// are logged at debug level only.
		ErrorLog: slog.NewLogLogger(c.log.With("server", "status page").Handler(), slog.LevelDebug),
	}
	srv := c.statusSrv
	c.wg.Go(func() {
		if err := srv.ServeTLS(netlimit.Listen(ln, c.cfg.Limits.MaxConnsPerIP), "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.log.Error("status page server", "err", err)
		}
	})
	c.log.Info("status page", "url", "https://"+c.statusAddr+"/", "bearer_token", tokenHash != nil)
	return nil
}

// StatusAddr is where the status page listens ("" without one).
func (c *Coordinator) StatusAddr() string { return c.statusAddr }

// statusHandler routes the status page's requests behind its checks: GET
// (and HEAD) only, then a caller authorised by its certificate or by the
// bearer token (tokenHash nil: certificates only).
func (c *Coordinator) statusHandler(tokenHash *[sha256.Size]byte) http.Handler {
	static, err := fs.Sub(statusAssets, "status")
	if err != nil {
		panic(err) // the embedded folder is part of the binary
	}
	page := func(name string) http.HandlerFunc {
		body, err := fs.ReadFile(static, name)
		if err != nil {
			panic(err)
		}
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = w.Write(body)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", page("index.html"))
	mux.HandleFunc("GET /jobs/{id}", page("job.html"))
	files := http.StripPrefix("/static/", http.FileServerFS(static))
	mux.HandleFunc("GET /static/{file}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("file") == "" || strings.HasSuffix(r.PathValue("file"), ".html") {
			http.NotFound(w, r) // no listing; pages have their own routes
			return
		}
		files.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /api/status", func(w http.ResponseWriter, r *http.Request) {
		writeStatusJSON(w, http.StatusOK, c.statusView())
	})
	mux.HandleFunc("GET /api/jobs/{id}", func(w http.ResponseWriter, r *http.Request) {
		v, err := c.jobView(r.PathValue("id"))
		if errors.Is(err, state.ErrUnknownJob) {
			writeStatusJSON(w, http.StatusNotFound, map[string]string{"error": err.Error(), "answered_by": c.cfg.Name})
			return
		}
		if err != nil {
			writeStatusJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		writeStatusJSON(w, http.StatusOK, v)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range statusHeaders {
			w.Header().Set(k, v)
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "the status page is read-only", http.StatusMethodNotAllowed)
			return
		}
		if err := c.authorizeStatus(r, tokenHash); err != nil {
			c.log.Debug("status page: request refused", "remote", r.RemoteAddr, "path", r.URL.Path, "err", err)
			w.Header().Set("WWW-Authenticate", `Bearer realm="accord status"`)
			http.Error(w, "unauthorized: present a certificate of this federation or the status bearer token", http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// authorizeStatus admits a request whose TLS client certificate chains to
// the federation CA (a coordinator's, participant's or admin's, not a
// consumer's or an inference server's; not revoked: a certificate revoked
// while a connection stays open is refused from then on), or that carries
// the bearer token.
func (c *Coordinator) authorizeStatus(r *http.Request, tokenHash *[sha256.Size]byte) error {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		leaf := r.TLS.VerifiedChains[0][0]
		id, err := pki.IdentityOf(leaf)
		if err != nil {
			return err
		}
		if id.Role != pki.RoleCoordinator && id.Role != pki.RoleParticipant && id.Role != pki.RoleAdmin {
			return fmt.Errorf("%w: %s is a %s", state.ErrForbidden, id.Name, id.Role)
		}
		if serial := pki.SerialOf(leaf); c.fsm.IsRevoked(serial) {
			return fmt.Errorf("%w: certificate %s", state.ErrRevoked, serial)
		}
		return nil
	}
	if tokenHash == nil {
		return errors.New("no client certificate") // unreachable: the handshake requires one
	}
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return errors.New("no client certificate and no bearer token")
	}
	// Compare hashes, so that the time taken says nothing about the
	// token's length either.
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	if subtle.ConstantTimeCompare(got[:], tokenHash[:]) != 1 {
		return errors.New("wrong bearer token")
	}
	return nil
}

func writeStatusJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
