package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"

	"github.com/verdict-engine/verdict/api"
)

// keySource is where one listener's keys come from: a file (re-read on
// SIGHUP) and/or an environment variable holding "name:key" entries
// separated by commas or newlines.
type keySource struct {
	flag, file string
	env, value string
}

// load reads and validates the keys; none is not an error here.
func (k keySource) load() ([]api.Key, error) {
	var text strings.Builder
	if k.file != "" {
		b, err := os.ReadFile(k.file)
		if err != nil {
			return nil, fmt.Errorf("-%s: %w", k.flag, err)
		}
		text.Write(b)
		text.WriteByte('\n')
	}
	text.WriteString(strings.ReplaceAll(k.value, ",", "\n"))
	if strings.TrimSpace(text.String()) == "" {
		return nil, nil
	}
	keys, err := api.ParseKeys(strings.NewReader(text.String()))
	if err != nil {
		return nil, fmt.Errorf("keys from -%s / %s: %w", k.flag, k.env, err)
	}
	return keys, nil
}

// listener is one HTTP server of serve.
type listener struct {
	name string
	addr string
	srv  *http.Server
	ln   net.Listener
}

func newListener(name, addr string, h http.Handler, log *slog.Logger) (*listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &listener{name: name, addr: ln.Addr().String(), ln: ln, srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}}, nil
}

// serveAll serves every listener until ctx ends or one fails, then shuts
// them all down gracefully: in-flight requests finish.
func serveAll(ctx context.Context, log *slog.Logger, tls *certificates, ls ...*listener) error {
	served := make(chan error, len(ls))
	for _, l := range ls {
		go func() {
			var err error
			if tls != nil {
				l.srv.TLSConfig = tls.config()
				err = l.srv.ServeTLS(l.ln, "", "")
			} else {
				err = l.srv.Serve(l.ln)
			}
			served <- fmt.Errorf("%s listener: %w", l.name, err)
		}()
	}
	var failed error
	select {
	case failed = <-served:
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing in-flight requests", "timeout", shutdownTimeout.String())
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	var errs []error
	pending := len(ls)
	if failed != nil {
		errs = append(errs, failed)
		pending--
	}
	for _, l := range ls {
		if err := l.srv.Shutdown(shutdownCtx); err != nil {
			errs = append(errs, fmt.Errorf("shutting down the %s listener: %w", l.name, err))
		}
	}
	for range pending {
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// certificates serves a TLS certificate and key pair that SIGHUP reloads.
type certificates struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

func loadCertificates(certFile, keyFile string) (*certificates, error) {
	c := &certificates{certFile: certFile, keyFile: keyFile}
	return c, c.reload()
}

// reload reads the pair again; on error the current pair keeps serving.
func (c *certificates) reload() error {
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("-tls-cert %s / -tls-key %s: %w", c.certFile, c.keyFile, err)
	}
	c.cur.Store(&pair)
	return nil
}

// config is TLS 1.2 or later with Go's default cipher suites.
func (c *certificates) config() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.cur.Load(), nil },
	}
}
