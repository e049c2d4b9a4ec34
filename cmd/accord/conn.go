package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	"github.com/accord-fl/accord/adminauth"
	"github.com/accord-fl/accord/pki"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// tlsFlags are the certificate flags every networked command takes; each
// defaults to an environment variable.
type tlsFlags struct {
	ca, cert, key *string
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func addTLSFlags(fs *flag.FlagSet) tlsFlags {
	return tlsFlags{
		ca:   fs.String("ca", envOr("ACCORD_CA", ""), "federation CA certificate (ca.crt) [$ACCORD_CA]"),
		cert: fs.String("cert", envOr("ACCORD_CERT", ""), "this identity's certificate [$ACCORD_CERT]"),
		key:  fs.String("key", envOr("ACCORD_KEY", ""), "this identity's key [$ACCORD_KEY]"),
	}
}

func (t tlsFlags) load() (*pkiMaterial, error) {
	for flagName, v := range map[string]string{"--ca": *t.ca, "--cert": *t.cert, "--key": *t.key} {
		if v == "" {
			return nil, usageError{fmt.Errorf("%s is required (every connection is mutual TLS; make certificates with 'accord pki')", flagName)}
		}
	}
	pool, err := pki.LoadCAPool(*t.ca)
	if err != nil {
		return nil, fmt.Errorf("--ca: %w", err)
	}
	cert, err := pki.LoadKeyPair(*t.cert, *t.key)
	if err != nil {
		return nil, fmt.Errorf("--cert/--key: %w", err)
	}
	return &pkiMaterial{pool: pool, cert: cert}, nil
}

// retryUnavailable makes gRPC retry a call that a coordinator refused with
// UNAVAILABLE (no leader known yet, leadership moving) for a few seconds.
const retryUnavailable = `{"methodConfig": [{"name": [{"service": "accord.v1.AdminService"}],
  "retryPolicy": {"maxAttempts": 5, "initialBackoff": "0.2s", "maxBackoff": "2s", "backoffMultiplier": 2,
                  "retryableStatusCodes": ["UNAVAILABLE"]}}]}`

// adminConn is a connection to a coordinator's admin service.
type adminConn struct {
	conn   *grpc.ClientConn
	client pb.AdminServiceClient
}

// addAdminFlags registers --coordinator and the TLS flags.
func addAdminFlags(fs *flag.FlagSet) (addr *string, tf tlsFlags) {
	addr = fs.String("coordinator", envOr("ACCORD_COORDINATOR", "127.0.0.1:7700"),
		"coordinators' gRPC addresses, comma-separated: the first that answers serves [$ACCORD_COORDINATOR]")
	return addr, addTLSFlags(fs)
}

// coordinatorAddrs splits a --coordinator list and checks each address.
func coordinatorAddrs(list string) ([]string, error) {
	var out []string
	for _, a := range strings.Split(list, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, usageError{fmt.Errorf("--coordinator %q: %q is not host:port", list, a)}
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, usageError{fmt.Errorf("--coordinator: name at least one host:port")}
	}
	return out, nil
}

func dialAdmin(list string, tf tlsFlags) (*adminConn, error) {
	addrs, err := coordinatorAddrs(list)
	if err != nil {
		return nil, err
	}
	mat, err := tf.load()
	if err != nil {
		return nil, err
	}
	// Every call is signed with the admin's key: coordinators believe the
	// signature, not the coordinator that forwards the call.
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(mat.cert, mat.pool))),
		grpc.WithDefaultServiceConfig(retryUnavailable),
		grpc.WithChainUnaryInterceptor(explainUnreachable(list), adminauth.UnaryClientInterceptor(mat.cert))}
	target := addrs[0]
	if len(addrs) > 1 {
		// Several coordinators: gRPC's pick_first takes the first that
		// connects; each is verified under its own host name.
		r := manual.NewBuilderWithScheme("accord")
		var state resolver.State
		for _, a := range addrs {
			host, _, _ := net.SplitHostPort(a)
			state.Addresses = append(state.Addresses, resolver.Address{Addr: a, ServerName: host})
		}
		r.InitialState(state)
		opts, target = append(opts, grpc.WithResolvers(r)), "accord:///coordinators"
	}
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, fmt.Errorf("--coordinator %s: %w", list, err)
	}
	return &adminConn{conn: conn, client: pb.NewAdminServiceClient(conn)}, nil
}

// printJSON prints what a --json flag asks for, in one dialect: the API's.
// Messages of the API (and lists of them) are printed as protojson prints
// them — field names as in the .proto files, enums by name, 64-bit
// integers as strings, every field present — as grpcurl shows the same
// calls; the CLI's own summaries use the same conventions (snake_case
// names, enum names).
func printJSON(w io.Writer, v any) error {
	var b []byte
	var err error
	switch x := v.(type) {
	case proto.Message:
		b, err = apiJSON.Marshal(x)
	default:
		if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice && rv.Type().Elem().Implements(protoMessage) {
			items := make([]json.RawMessage, rv.Len())
			for i := range items {
				if items[i], err = apiJSON.Marshal(rv.Index(i).Interface().(proto.Message)); err != nil {
					return err
				}
			}
			b, err = json.Marshal(items)
		} else {
			b, err = json.Marshal(v)
		}
	}
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err = w.Write(out.Bytes())
	return err
}

// apiJSON is the API's JSON dialect (see printJSON).
var apiJSON = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

var protoMessage = reflect.TypeFor[proto.Message]()

// explainUnreachable turns gRPC's transport errors into what to do: which
// addresses were tried and how to set them, or that the coordinator refused
// this certificate. A coordinator's own answers pass unchanged.
func explainUnreachable(list string) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(ctx, method, req, reply, cc, opts...)
		st, ok := status.FromError(err)
		if !ok || st.Code() != codes.Unavailable {
			return err
		}
		msg := st.Message()
		switch {
		case strings.Contains(msg, "certificate") || strings.Contains(msg, "broken pipe") || strings.Contains(msg, "tls:"):
			return &unreachableError{refused: true, err: err,
				msg: fmt.Sprintf("the coordinator at %s refused this connection (is --cert from this federation's CA, and --ca its CA?): %s", list, msg)}
		case strings.Contains(msg, "connection error") || strings.Contains(msg, "connect:") || strings.Contains(msg, "dial"):
			return &unreachableError{err: err,
				msg: fmt.Sprintf("no coordinator answered at %s (--coordinator or $ACCORD_COORDINATOR sets the addresses; the default is 127.0.0.1:7700): %s", list, msg)}
		}
		return err
	}
}

// unreachableError is a call that reached no coordinator (or one that
// refused this certificate: refused), explained; it wraps gRPC's status.
type unreachableError struct {
	msg     string
	refused bool
	err     error
}

func (e *unreachableError) Error() string { return e.msg }
func (e *unreachableError) Unwrap() error { return e.err }
