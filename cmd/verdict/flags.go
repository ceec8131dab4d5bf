package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
)

// Flag values validate themselves in Set, so a bad value fails at start
// with the flag package's message naming the flag (or the environment
// variable, see applyEnv).

// byteSize is a size such as 64MiB, 256MB or 1048576.
type byteSize int64

func (b *byteSize) String() string {
	return humanize.IBytes(uint64(*b)) // #nosec G115 -- Set accepts 1 MiB to 1 TiB only: never negative
}

func (b *byteSize) Set(s string) error {
	n, err := humanize.ParseBytes(s)
	if err != nil {
		return errors.New("want a size such as 64MiB or 256MB")
	}
	if n < 1<<20 || n > 1<<40 {
		return errors.New("must be between 1MiB and 1TiB")
	}
	*b = byteSize(n)
	return nil
}

// optionalSize is a byteSize, or 0 (also "off") for none.
type optionalSize int64

func (b *optionalSize) String() string {
	if *b == 0 {
		return "0"
	}
	return (*byteSize)(b).String()
}

func (b *optionalSize) Set(s string) error {
	if s == "0" || s == "off" {
		*b = 0
		return nil
	}
	if err := (*byteSize)(b).Set(s); err != nil {
		return fmt.Errorf("%w, or 0 (off)", err)
	}
	return nil
}

// positiveDuration is a Go duration greater than zero.
type positiveDuration time.Duration

func (d *positiveDuration) String() string { return time.Duration(*d).String() }

func (d *positiveDuration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("want a duration such as 800ms, 30s or 5m")
	}
	if v <= 0 {
		return errors.New("must be positive")
	}
	*d = positiveDuration(v)
	return nil
}

// nonNegativeDuration is a Go duration of zero or more.
type nonNegativeDuration time.Duration

func (d *nonNegativeDuration) String() string { return time.Duration(*d).String() }

func (d *nonNegativeDuration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("want a duration such as 0, 30m or 1h")
	}
	if v < 0 {
		return errors.New("must not be negative")
	}
	*d = nonNegativeDuration(v)
	return nil
}

// pollInterval is 0 (also "off") or a duration from 50µs to 10ms: past
// 10 ms the runtime's own monitor polls the network anyway.
type pollInterval time.Duration

func (d *pollInterval) String() string { return time.Duration(*d).String() }

func (d *pollInterval) Set(s string) error {
	if s == "0" || s == "off" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("want a duration such as 500us or 1ms, or 0 (off)")
	}
	if v < 50*time.Microsecond || v > 10*time.Millisecond {
		return fmt.Errorf("%v: want 50us to 10ms, or 0 (off)", v)
	}
	*d = pollInterval(v)
	return nil
}

// count is a whole number from 1 to 1,000,000.
type count uint32

func (n *count) String() string { return strconv.FormatUint(uint64(*n), 10) }

func (n *count) Set(s string) error {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil || v < 1 || v > 1_000_000 {
		return errors.New("want a whole number from 1 to 1000000")
	}
	*n = count(v)
	return nil
}

// ratio is a number in (0, 1].
type ratio float64

func (r *ratio) String() string { return strconv.FormatFloat(float64(*r), 'g', -1, 64) }

func (r *ratio) Set(s string) error {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || !(v > 0 && v <= 1) {
		return errors.New("want a number greater than 0 and at most 1, e.g. 0.5")
	}
	*r = ratio(v)
	return nil
}

// baseURL is an absolute http(s) URL without query or fragment.
type baseURL string

func (u *baseURL) String() string { return string(*u) }

func (u *baseURL) Set(s string) error {
	p, err := url.Parse(s)
	switch {
	case err != nil:
		return errors.New("not a URL")
	case p.Scheme != "http" && p.Scheme != "https":
		return errors.New("scheme must be http or https")
	case p.Host == "":
		return errors.New("no host")
	case p.RawQuery != "" || p.Fragment != "" || p.User != nil:
		return errors.New("must not carry credentials, a query or a fragment")
	}
	*u = baseURL(strings.TrimRight(s, "/"))
	return nil
}

// urlPath is an absolute URL path.
type urlPath string

func (p *urlPath) String() string { return string(*p) }

func (p *urlPath) Set(s string) error {
	if !strings.HasPrefix(s, "/") || strings.ContainsAny(s, "?# \t") {
		return errors.New("must start with / and hold no query, fragment or space")
	}
	*p = urlPath(s)
	return nil
}

// header is "Name: value", e.g. "Authorization: Bearer <key>". Its value is
// a secret: String never shows it.
type header struct{ name, value string }

func (h *header) String() string {
	if h.name == "" {
		return ""
	}
	return h.name + ": <redacted>"
}

func (h *header) Set(s string) error {
	name, value, ok := strings.Cut(s, ":")
	name, value = strings.TrimSpace(name), strings.TrimSpace(value)
	switch {
	case !ok || name == "" || value == "":
		return errors.New(`want "Name: value", e.g. "Authorization: Bearer <key>"`)
	case strings.ContainsAny(name, " \t\"(),/:;<=>?@[\\]{}"):
		return fmt.Errorf("%q is not a valid header name", name)
	case strings.ContainsAny(value, "\r\n\x00"):
		return errors.New("value must not contain CR, LF or NUL")
	}
	h.name, h.value = name, value
	return nil
}

// listenAddr is a host:port to listen on.
type listenAddr string

func (a *listenAddr) String() string { return string(*a) }

func (a *listenAddr) Set(s string) error {
	if _, _, err := net.SplitHostPort(s); err != nil {
		return errors.New(`want host:port, e.g. ":8080" or "127.0.0.1:8080"`)
	}
	*a = listenAddr(s)
	return nil
}

// logLevel is debug, info, warn or error.
type logLevel struct{ slog.Level }

func (l *logLevel) Set(s string) error {
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return errors.New("want debug, info, warn or error")
	}
	return nil
}

// envName is a flag's environment twin: --cache-ttl is VERDICT_CACHE_TTL.
func envName(flagName string) string {
	return "VERDICT_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// applyEnv sets every flag not given on the command line from its
// environment twin, when that is set. Command-line flags win.
func applyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		v := getenv(envName(f.Name))
		if given[f.Name] || v == "" {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			shown := fmt.Sprintf("%q", v)
			if _, secret := f.Value.(*header); secret {
				shown = "(redacted)"
			}
			errs = append(errs, fmt.Errorf("invalid value %s for %s (twin of -%s): %w", shown, envName(f.Name), f.Name, err))
		}
	})
	return errors.Join(errs...)
}
