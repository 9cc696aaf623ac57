// Package stratasuite runs containerd's own conformance suites against `strata serve`
// through the gRPC proxy clients containerd uses for proxy plugins.
//
// One server per case: each case's root gets its own `strata --root ROOT serve` on a
// unix socket under that root. Build and run in GOPATH mode against Debian's containerd
// source (see crates/grpc/tests/containerd_suites.rs):
//
//	STRATA_BIN=/path/to/strata GO111MODULE=off GOPATH=$PWD/crates/grpc/conformance:/usr/share/gocode \
//	    go test stratasuite -args -test.root
package stratasuite

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/content"
	contentproxy "github.com/containerd/containerd/content/proxy"
	contentsuite "github.com/containerd/containerd/content/testsuite"
	"github.com/containerd/containerd/defaults"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/pkg/dialer"
	"github.com/containerd/containerd/snapshots"
	snapshotsproxy "github.com/containerd/containerd/snapshots/proxy"
	snapshotsuite "github.com/containerd/containerd/snapshots/testsuite"
	"google.golang.org/grpc"
)

// server is one running `strata serve` and the connection to it.
type server struct {
	cmd  *exec.Cmd
	conn *grpc.ClientConn
}

// startServer runs `strata --root root --snapshotter sn serve` and connects to it once a
// connection to its socket succeeds (the file exists before the server listens).
func startServer(root, sn string) (*server, error) {
	bin := os.Getenv("STRATA_BIN")
	if bin == "" {
		return nil, fmt.Errorf("STRATA_BIN is not set")
	}
	sock := filepath.Join(root, "strata.sock")
	cmd := exec.Command(bin, "--root", root, "--snapshotter", sn, "serve", "--address", sock)
	if os.Getenv("STRATA_SERVE_LOG") != "" {
		cmd.Stdout = os.Stderr
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	if err := waitForSocket(sock, 20*time.Second); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, err
	}
	// Dialled as containerd dials a proxy plugin: "unix://" target (authority
	// "localhost"), containerd's dialer, its message size limits.
	conn, err := grpc.Dial(dialer.DialAddress(sock),
		grpc.WithInsecure(),
		grpc.WithContextDialer(dialer.ContextDialer),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(defaults.DefaultMaxRecvMsgSize)),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(defaults.DefaultMaxSendMsgSize)),
	)
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("dial %s: %w", sock, err)
	}
	return &server{cmd: cmd, conn: conn}, nil
}

func waitForSocket(sock string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.Dial("unix", sock)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("strata serve did not accept on %s within %v: %w", sock, limit, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop closes the connection and stops the server with SIGTERM; it must exit cleanly.
func (s *server) stop() error {
	connErr := s.conn.Close()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("signal strata serve: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("strata serve exited badly after SIGTERM: %w", err)
		}
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		return fmt.Errorf("strata serve did not stop within 10s of SIGTERM")
	}
	return connErr
}

func snapshotterFn(name string) snapshotsuite.SnapshotterFunc {
	return func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
		s, err := startServer(root, name)
		if err != nil {
			return nil, nil, err
		}
		sn := snapshotsproxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(s.conn), "strata")
		return sn, s.stop, nil
	}
}

func TestSnapshotterNative(t *testing.T) {
	snapshotsuite.SnapshotterSuite(t, "StrataNative", snapshotterFn("native"))
}

func TestSnapshotterOverlay(t *testing.T) {
	snapshotsuite.SnapshotterSuite(t, "StrataOverlay", snapshotterFn("overlay"))
}

// contentStore starts a server for the case's root; every call of the case runs in a
// namespace of its own (a context wrapper), which the cross-namespace cases need.
func contentStore(ctx context.Context, root string) (context.Context, content.Store, func() error, error) {
	s, err := startServer(root, "native")
	if err != nil {
		return nil, nil, nil, err
	}
	var count uint64
	name := contentsuite.Name(ctx)
	wrap := func(ctx context.Context) (context.Context, func(context.Context) error, error) {
		n := atomic.AddUint64(&count, 1)
		ns := fmt.Sprintf("%s-n%d", name, n)
		return namespaces.WithNamespace(ctx, ns), func(context.Context) error { return nil }, nil
	}
	ctx = contentsuite.SetContextWrapper(ctx, wrap)
	cs := contentproxy.NewContentStore(contentapi.NewContentClient(s.conn))
	return ctx, cs, s.stop, nil
}

func TestContent(t *testing.T) {
	contentsuite.ContentSuite(t, "strata", contentStore)
	contentsuite.ContentCrossNSSharedSuite(t, "strata", contentStore)
}
