package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Run serves on $BERTH_AGENT_HOST:$PORT (default 0.0.0.0:8080, AgentCore's
// container contract) until SIGINT or SIGTERM, then shuts down gracefully.
// It returns nil after a clean shutdown.
func (a *App) Run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	addr := listenAddr()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	return a.Serve(ctx, ln)
}

func listenAddr() string {
	host, port := os.Getenv(EnvHost), os.Getenv(EnvPort)
	if host == "" {
		host = defaultHost
	}
	if port == "" {
		port = defaultPort
	}
	return net.JoinHostPort(host, port)
}

// Serve serves on ln until ctx is done, then stops accepting, lets in-flight
// invocations finish, and calls [App.Shutdown], all within the shutdown
// timeout (see [WithShutdownTimeout]). Streams still open at the deadline are
// cut. Serve closes ln and logs "listening" with the address once it accepts.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           a.mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.logger.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	a.logger.Info("listening", slog.String("addr", ln.Addr().String()))

	var errs []error
	select {
	case err := <-served:
		errs = append(errs, fmt.Errorf("serve: %w", err))
		served = nil
	case <-ctx.Done():
		a.logger.Info("shutting down", slog.Any("cause", context.Cause(ctx)))
	}

	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		// Invocations outlived the deadline: cut them.
		_ = srv.Close()
		errs = append(errs, fmt.Errorf("drain invocations: %w", err))
	}
	if served != nil {
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, fmt.Errorf("serve: %w", err))
		}
	}
	if err := a.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("stop async tasks: %w", err))
	}
	err := errors.Join(errs...)
	if err != nil {
		a.logger.Error("stopped", slog.Any("err", err))
	} else {
		a.logger.Info("stopped")
	}
	return err
}
