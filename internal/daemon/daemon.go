// Package daemon assembles a berth server from its configuration: the
// store, the registry, the sandbox backends, the session manager and the
// HTTP listener. `berth serve` and `berth demo` both run one.
package daemon

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/auth"
	"github.com/berth-dev/berth/internal/codestore"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/internal/sandbox/process"
	"github.com/berth-dev/berth/internal/server"
	"github.com/berth-dev/berth/internal/session"
	"github.com/berth-dev/berth/internal/session/agentlog"
	"github.com/berth-dev/berth/internal/storage"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/telemetry"
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
	lock           *os.File      // the data dir's flock, held until Close
	keys           *auth.Keyring // nil unless auth mode is sigv4
	metricsSrv     *http.Server  // on metrics_listen, if set
	metricsLn      net.Listener
	tracing        *telemetry.Tracing
	images         *image.Store

	stopSampler context.CancelFunc
	stop        context.CancelFunc // the credentials watcher
	wg          sync.WaitGroup     // the HTTP servers, the usage and history samplers, and the credentials watcher
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
	// Before anything that reads or changes the data dir: a second berth
	// would end the first one's sessions and reap its sandboxes.
	lock, err := lockDataDir(dataDir)
	if err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, log: log, serveErr: make(chan error, 1), dataDir: dataDir, lock: lock}
	ok := false
	defer func() {
		if !ok {
			if d.sessions != nil {
				d.sessions.Shutdown(context.WithoutCancel(ctx))
			}
			d.closeBackends()
			d.closeStore()
			if d.ln != nil {
				d.ln.Close()
			}
			d.unlock()
			d.tracing.Shutdown(context.WithoutCancel(ctx))
		}
	}()
	for _, root := range cfg.CodeRoots {
		if err := os.MkdirAll(root, 0o755); err != nil {
			return nil, fmt.Errorf("create code root: %w", err)
		}
	}

	d.db, err = store.Open(ctx, filepath.Join(dataDir, "berth.db"))
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	code, err := codestore.Open(filepath.Join(dataDir, "snapshots"))
	if err != nil {
		return nil, err
	}
	d.images, err = image.Open(image.Options{Dir: filepath.Join(dataDir, "images"), MaxBytes: int64(cfg.MaxImageBytes),
		Insecure: cfg.InsecureRegistries, DockerConfig: cfg.DockerConfig, Logger: log})
	if err != nil {
		return nil, err
	}
	d.reg = registry.New(d.db, registry.Options{Rules: cfg.Rules(), Code: code, Images: registryPuller{images{s: d.images, log: log}},
		Region: cfg.Region, Account: cfg.Account, Logger: log})

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
	// Listen before any agent starts: agents learn berth's address from
	// it (AGENTCORE_RUNTIME_URL).
	d.ln, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	base := publicBase(d.ln.Addr(), cfg.TLS.Enabled())
	metrics := newMetrics(d)
	d.tracing, err = telemetry.NewTracing(ctx, telemetry.TracingOptions{Region: cfg.Region, Account: cfg.Account})
	if err != nil {
		return nil, err
	}
	d.sessions = session.NewManager(d.db, backends, session.Options{
		Observer:             metrics,
		Tracer:               d.tracing.TracerProvider().Tracer("github.com/berth-dev/berth/internal/session"),
		AgentEnv:             d.tracing.AgentEnv,
		Runtimes:             d.reg,
		LogDir:               filepath.Join(dataDir, "logs"),
		LogRetention:         time.Duration(cfg.LogRetention),
		LogLimits:            agentlog.Limits{MaxBytes: int64(cfg.LogMaxBytes), Files: cfg.LogFiles},
		StateDir:             filepath.Join(dataDir, "run"),
		StateRetention:       time.Duration(cfg.StateRetention),
		Storage:              vols,
		Images:               d.images,
		StorageRetention:     time.Duration(cfg.SessionStorageRetention),
		StartTimeout:         time.Duration(cfg.StartTimeout),
		PingInterval:         time.Duration(cfg.PingInterval),
		PingFailures:         cfg.PingFailures,
		StopGrace:            time.Duration(cfg.StopGrace),
		DefaultBackend:       defaultBackend,
		MaxSessions:          cfg.MaxSessions,
		NewSessionsPerSecond: cfg.NewSessionsPerSecond,
		RuntimeARN:           d.reg.RuntimeARN,
		RuntimeURL:           func(id string) string { return api.InvocationURL(base, d.reg.RuntimeARN(id)) + "/" },
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

	authn, err := d.openAuth(cfg)
	if err != nil {
		return nil, err
	}
	var tlsCfg *tls.Config
	if cfg.TLS.Enabled() {
		cert, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}

	imgs := images{s: d.images, reg: d.reg, log: log}
	if _, err := imgs.collect(ctx, imageGrace); err != nil {
		log.Warn("collect images", "err", err)
	}
	srv := server.New(server.Options{
		Images:          imgs,
		Registry:        d.reg,
		Sessions:        d.sessions,
		SessionStore:    d.db,
		Metrics:         metrics,
		Tracing:         d.tracing,
		MaxPayloadBytes: int64(cfg.MaxPayloadBytes),
		Guard: server.Guard{
			AllowedHosts:    cfg.AllowedHosts,
			AllowedOrigins:  cfg.AllowedOrigins,
			BodyIdleTimeout: time.Duration(cfg.BodyIdleTimeout),
		},
		Health: d.health,
		Auth:   authn,
		Logger: log,
	})
	if cfg.MetricsListen != "" {
		if d.metricsLn, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			return nil, fmt.Errorf("listen on %s (metrics_listen): %w", cfg.MetricsListen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", srv.MetricsHandler())
		d.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Duration(cfg.IdleTimeout),
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
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
		TLSConfig:         tlsCfg,
	}
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	d.stop = stop
	d.wg.Go(func() {
		serve := d.srv.Serve
		if tlsCfg != nil {
			serve = func(ln net.Listener) error { return d.srv.ServeTLS(ln, "", "") }
		}
		if err := serve(d.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.serveErr <- err
		}
	})
	sctx, stopSampler := context.WithCancel(context.Background())
	d.stopSampler = stopSampler
	d.wg.Go(func() { metrics.SampleUsage(sctx, usageSampleEvery) })
	d.wg.Go(func() { metrics.RecordHistory(sctx, historySampleEvery) })
	d.wg.Go(func() { imgs.collectEvery(sctx, imageGCEvery) })
	if d.metricsSrv != nil {
		d.wg.Go(func() {
			if err := d.metricsSrv.Serve(d.metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics listener failed", "err", err)
			}
		})
	}
	if d.keys != nil {
		d.wg.Go(func() { d.keys.Watch(bg, credentialsPoll) })
	}
	ok = true
	return d, nil
}

// credentialsPoll is how often berth looks for a changed credentials file.
const credentialsPoll = 2 * time.Second

// openAuth builds the authenticator the config asks for: its keys, the
// spool for bodies read to check their signatures, and the key of the
// workload access tokens, kept in the data dir so they survive restarts.
func (d *Daemon) openAuth(cfg config.Config) (*auth.Authenticator, error) {
	spool := filepath.Join(d.dataDir, "spool")
	if err := os.RemoveAll(spool); err != nil {
		return nil, fmt.Errorf("clear spool: %w", err)
	}
	if err := os.MkdirAll(spool, 0o700); err != nil {
		return nil, fmt.Errorf("create spool: %w", err)
	}
	wat, err := workloadKey(filepath.Join(d.dataDir, "workload-token.key"))
	if err != nil {
		return nil, err
	}
	opts := auth.Options{Mode: cfg.AuthMode(), Region: cfg.Region, SpoolDir: spool, MaxBody: int64(cfg.MaxPayloadBytes),
		WorkloadKey: wat, Logger: d.log}
	switch {
	case opts.Mode == auth.ModeSigV4:
		a := cfg.Auth
		d.keys, err = auth.OpenKeyring(a.CredentialsFile, d.log)
		if err != nil {
			return nil, fmt.Errorf("auth: %w (create it with: berth credentials create NAME --file %s)", err, a.CredentialsFile)
		}
		opts.Keys, opts.Policy = d.keys, auth.Policy{Admins: a.Admins, ActAsUser: a.ActAsUser}
		d.log.Info("authentication: sigv4", "credentials_file", a.CredentialsFile, "admins", a.Admins)
	case cfg.InsecureNoAuth && !config.LoopbackListen(cfg.Listen):
		d.log.Warn("AUTHENTICATION IS OFF (--insecure-no-auth) on a listen other machines can reach: anyone who reaches " +
			cfg.Listen + " can run code as berth")
	case cfg.Auth == nil:
		d.log.Warn("authentication is off (no auth section): every caller that reaches " + cfg.Listen +
			" may do anything; fine on loopback, see docs/security.md before exposing berth")
	default:
		d.log.Warn("authentication is off (auth.mode: none): every caller may do anything")
	}
	return auth.New(opts)
}

// workloadKey reads the workload access tokens' key, making one the first
// time.
func workloadKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if err == nil && len(key) == 32 {
		return key, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read workload token key: %w", err)
	}
	key = make([]byte, 32)
	rand.Read(key)
	if err := os.WriteFile(path, key, 0o600); err != nil {
		return nil, fmt.Errorf("write workload token key: %w", err)
	}
	return key, nil
}

// ReloadCredentials re-reads the credentials file (berth serve calls it
// on SIGHUP); a file that does not parse keeps the keys berth had.
func (d *Daemon) ReloadCredentials() error {
	if d.keys == nil {
		return errors.New("authentication is not sigv4: there is no credentials file")
	}
	n, err := d.keys.Reload()
	if err != nil {
		d.log.Error("credentials file cannot be read; keeping the previous keys", "err", err)
		return err
	}
	d.log.Info("credentials file reloaded", "path", d.keys.Path(), "principals", n)
	return nil
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

// Images is the daemon's image store.
func (d *Daemon) Images() *image.Store { return d.images }

// Addr is the address the server listens on.
func (d *Daemon) Addr() string { return d.ln.Addr().String() }

// URL is the server's base URL.
func (d *Daemon) URL() string {
	if d.cfg.TLS.Enabled() {
		return "https://" + d.Addr()
	}
	return "http://" + d.Addr()
}

// MetricsAddr is the metrics_listen address, or "".
func (d *Daemon) MetricsAddr() string {
	if d.metricsLn == nil {
		return ""
	}
	return d.metricsLn.Addr().String()
}

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
	if d.metricsSrv != nil {
		if err := d.metricsSrv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop metrics server: %w", err))
		}
	}
	d.stop()
	d.wg.Wait()
	// After the sessions and the server: their last spans are queued.
	if err := d.tracing.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("flush traces: %w", err))
	}
	if err := d.closeBackends(); err != nil {
		errs = append(errs, err)
	}
	if err := d.closeStore(); err != nil {
		errs = append(errs, err)
	}
	d.unlock()
	return errors.Join(errs...)
}

// unlock releases the data dir, last: nothing of this berth touches it
// after.
func (d *Daemon) unlock() {
	if d.lock != nil {
		d.lock.Close()
		d.lock = nil
	}
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

// publicBase is the scheme and host agents reach berth at: the listener's
// address, with a host that names this machine when it listens on all
// interfaces.
func publicBase(addr net.Addr, tls bool) string {
	host, port, _ := net.SplitHostPort(addr.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		if name, err := os.Hostname(); err == nil {
			host = name
		} else {
			host = "localhost"
		}
	}
	scheme := "http://"
	if tls {
		scheme = "https://"
	}
	return scheme + net.JoinHostPort(host, port)
}
