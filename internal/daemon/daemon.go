// Package daemon assembles a berth server from its configuration: the
// store, the registry, the sandbox backends, the session manager and the
// HTTP listener. `berth serve` and `berth demo` both run one.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/codestore"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/sandbox/process"
	"github.com/berth-dev/berth/internal/server"
	"github.com/berth-dev/berth/internal/session"
	"github.com/berth-dev/berth/internal/storage"
	"github.com/berth-dev/berth/internal/store"
	"golang.org/x/net/netutil"
)

// maxHeaderBytes caps a request's headers: AgentCore's largest header is
// an 8 KB baggage, and 20 custom headers of 4 KB fit beside it.
const maxHeaderBytes = 128 << 10

// Daemon is a running berth server.
type Daemon struct {
	cfg            config.Config
	log            *slog.Logger
	db             *store.DB
	reg            *registry.Registry
	sessions       *session.Manager
	srv            *http.Server
	ln             net.Listener
	runtimes       []registry.Runtime
	defaultBackend string
	dataDir        string
	backends       map[string]sandbox.Backend

	stopSampler context.CancelFunc
	wg          sync.WaitGroup // the HTTP server and the usage sampler
	serveErr    chan error
}

// Start opens the store, reconciles the config's runtimes, cleans up what a
// previous process left, and starts listening.
func Start(ctx context.Context, cfg config.Config, log *slog.Logger) (*Daemon, error) {
	if log == nil {
		log = slog.Default()
	}
	cfg.Runtimes = slices.Clone(cfg.Runtimes)
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("resolve data dir: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	for _, root := range cfg.CodeRoots {
		if err := os.MkdirAll(root, 0o755); err != nil {
			return nil, fmt.Errorf("create code root: %w", err)
		}
	}
	d := &Daemon{cfg: cfg, log: log, serveErr: make(chan error, 1), dataDir: dataDir}
	ok := false
	defer func() {
		if !ok {
			if d.sessions != nil {
				d.sessions.Shutdown(context.WithoutCancel(ctx))
			}
			d.closeBackends()
			d.closeStore()
		}
	}()

	d.db, err = store.Open(ctx, filepath.Join(dataDir, "berth.db"))
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	code, err := codestore.Open(filepath.Join(dataDir, "snapshots"))
	if err != nil {
		return nil, err
	}
	d.reg = registry.New(d.db, registry.Options{Rules: cfg.Rules(), Code: code, Region: cfg.Region, Account: cfg.Account, Logger: log})

	backends, defaultBackend, err := openBackends(dataDir, cfg.UserNamespace, log)
	if err != nil {
		return nil, err
	}
	d.defaultBackend = defaultBackend
	d.backends = backends
	var vols *storage.Store
	if err := storage.Available(); err != nil {
		log.Info("session storage unavailable; runtimes that ask for it will fail to start", "reason", err)
	} else if vols, err = storage.Open(filepath.Join(dataDir, "storage"), int64(cfg.SessionStorageMaxBytes), log); err != nil {
		return nil, err
	}
	metrics := newMetrics(d)
	d.sessions = session.NewManager(d.db, backends, session.Options{
		Observer:             metrics,
		Runtimes:             d.reg,
		LogDir:               filepath.Join(dataDir, "logs"),
		LogRetention:         time.Duration(cfg.LogRetention),
		StateDir:             filepath.Join(dataDir, "run"),
		StateRetention:       time.Duration(cfg.StateRetention),
		Storage:              vols,
		StorageRetention:     time.Duration(cfg.SessionStorageRetention),
		StartTimeout:         time.Duration(cfg.StartTimeout),
		PingInterval:         time.Duration(cfg.PingInterval),
		PingFailures:         cfg.PingFailures,
		StopGrace:            time.Duration(cfg.StopGrace),
		DefaultBackend:       defaultBackend,
		MaxSessions:          cfg.MaxSessions,
		NewSessionsPerSecond: cfg.NewSessionsPerSecond,
		RuntimeARN:           d.reg.RuntimeARN,
		Logger:               log,
	})
	if err := d.sessions.Recover(ctx); err != nil {
		return nil, fmt.Errorf("recover: %w", err)
	}
	d.reg.Watch(d.sessions)
	d.runtimes, err = d.reg.Reconcile(ctx, cfg.Runtimes)
	if err != nil {
		return nil, fmt.Errorf("reconcile config runtimes: %w", err)
	}
	if err := d.reg.CollectCode(ctx); err != nil {
		log.Warn("collect code snapshots", "err", err)
	}
	ids, err := d.reg.RuntimeIDs(ctx)
	if err != nil {
		return nil, err
	}
	d.sessions.SyncPools(ctx, ids)

	srv := server.New(server.Options{
		Registry:        d.reg,
		Sessions:        d.sessions,
		SessionStore:    d.db,
		Metrics:         metrics,
		MaxPayloadBytes: int64(cfg.MaxPayloadBytes),
		Guard: server.Guard{
			AllowedHosts:    cfg.AllowedHosts,
			AllowedOrigins:  cfg.AllowedOrigins,
			BodyIdleTimeout: time.Duration(cfg.BodyIdleTimeout),
		},
		Logger: log,
	})
	d.ln, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	d.ln = netutil.LimitListener(d.ln, cfg.MaxConnections)
	// No WriteTimeout: streams may run for 60 minutes; handlers lift or
	// set deadlines per response.
	d.srv = &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Duration(cfg.IdleTimeout),
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := d.srv.Serve(d.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.serveErr <- err
		}
	}()
	sctx, stop := context.WithCancel(context.Background())
	d.stopSampler = stop
	d.wg.Go(func() { metrics.SampleUsage(sctx, usageSampleEvery) })
	ok = true
	return d, nil
}

// openBackends opens every sandbox backend this host can run and picks the
// default: linux where the kernel allows it, otherwise process.
func openBackends(dataDir string, userNS bool, log *slog.Logger) (map[string]sandbox.Backend, string, error) {
	backends := map[string]sandbox.Backend{
		"process": process.New(filepath.Join(dataDir, "sandboxes", "process"), log),
	}
	def := "process"
	if b, err := openLinux(dataDir, userNS, log); err == nil {
		backends["linux"] = b
		def = "linux"
	} else {
		log.Info("linux sandbox backend unavailable; using process", "reason", err)
	}
	return backends, def, nil
}

// Addr is the address the server listens on.
func (d *Daemon) Addr() string { return d.ln.Addr().String() }

// URL is the server's base URL.
func (d *Daemon) URL() string { return "http://" + d.Addr() }

// Runtimes are the runtimes declared in the config file.
func (d *Daemon) Runtimes() []registry.Runtime { return d.runtimes }

// Err reports a listener failure.
func (d *Daemon) Err() <-chan error { return d.serveErr }

// Close drains: it stops accepting requests, ends every session, stops every
// sandbox and closes the store. It runs on a fresh bounded context.
func (d *Daemon) Close(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(d.cfg.StopGrace)+30*time.Second)
	defer cancel()
	// End sessions first: their streams would otherwise hold the HTTP
	// server's Shutdown open.
	var errs []error
	if err := d.sessions.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("end sessions: %w", err))
	}
	if err := d.srv.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("stop http server: %w", err))
	}
	d.stopSampler()
	d.wg.Wait()
	if err := d.closeBackends(); err != nil {
		errs = append(errs, err)
	}
	if err := d.closeStore(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// closeBackends releases what backends hold of their own (the linux
// backend's pre-started inits and egress rules), after every sandbox ended.
func (d *Daemon) closeBackends() error {
	var errs []error
	for name, b := range d.backends {
		if c, ok := b.(io.Closer); ok {
			if err := c.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close %s sandbox backend: %w", name, err))
			}
		}
	}
	d.backends = nil
	return errors.Join(errs...)
}

func (d *Daemon) closeStore() error {
	if d.db == nil {
		return nil
	}
	err := d.db.Close()
	d.db = nil
	if err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// DefaultBackend names the sandbox backend runtimes get by default.
func (d *Daemon) DefaultBackend() string { return d.defaultBackend }
