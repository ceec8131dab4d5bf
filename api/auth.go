package api

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"
)

// Key is one named API key. The name is what logs record; the key is a
// secret that nothing logs.
type Key struct {
	Name   string
	Secret string
}

// MinKeyLength is the shortest key accepted: 16 characters.
const MinKeyLength = 16

var keyName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// ParseKeys reads "name:key" lines (blank lines and lines starting with #
// are skipped). Names are 1-64 of [A-Za-z0-9_.-]; keys are at least 16
// printable ASCII characters without spaces. Names and keys must be unique,
// so a key rotates by adding a new line before removing the old one. Errors
// name the line, never the key.
func ParseKeys(r io.Reader) ([]Key, error) {
	var keys []Key
	names, secrets := map[string]int{}, map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, secret, ok := strings.Cut(line, ":")
		switch {
		case !ok:
			return nil, fmt.Errorf("line %d: want name:key", n)
		case !keyName.MatchString(name):
			return nil, fmt.Errorf("line %d: key name must be 1-64 of A-Z a-z 0-9 _ . -", n)
		case len(secret) < MinKeyLength:
			return nil, fmt.Errorf("line %d (%s): key shorter than %d characters", n, name, MinKeyLength)
		case !printable(secret):
			return nil, fmt.Errorf("line %d (%s): key must be printable ASCII without spaces", n, name)
		case names[name] != 0:
			return nil, fmt.Errorf("line %d: key name %s already used on line %d", n, name, names[name])
		case secrets[secret] != 0:
			return nil, fmt.Errorf("line %d (%s): same key as line %d", n, name, secrets[secret])
		}
		names[name], secrets[secret] = n, n
		keys = append(keys, Key{Name: name, Secret: secret})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading keys: %w", err)
	}
	if len(keys) == 0 {
		return nil, errors.New("no keys")
	}
	return keys, nil
}

// printable reports whether s is printable ASCII without spaces.
func printable(s string) bool { return unprintableAt(s) < 0 }

// unprintableAt returns the index of the first byte of s outside 0x21-0x7e
// (printable ASCII without spaces), -1 when there is none.
func unprintableAt(s string) int {
	for i := range len(s) {
		if s[i] < 0x21 || s[i] > 0x7e {
			return i
		}
	}
	return -1
}

// Keys is the set of keys a listener accepts. Replace swaps it atomically
// (on SIGHUP). It is safe for concurrent use.
type Keys struct {
	v atomic.Pointer[[]hashedKey]
}

type hashedKey struct {
	name string
	sum  [32]byte
}

// NewKeys returns a Keys holding keys.
func NewKeys(keys []Key) *Keys {
	k := &Keys{}
	k.Replace(keys)
	return k
}

// Replace swaps in a new set of keys.
func (k *Keys) Replace(keys []Key) {
	hashed := make([]hashedKey, len(keys))
	for i, key := range keys {
		hashed[i] = hashedKey{key.Name, sha256.Sum256([]byte(key.Secret))}
	}
	k.v.Store(&hashed)
}

// Lookup returns the name of the key presented, comparing in constant time
// with every key (the time does not tell which key, or how much of one,
// matched).
func (k *Keys) Lookup(presented string) (string, bool) {
	sum := sha256.Sum256([]byte(presented))
	name, found := "", 0
	for _, h := range *k.v.Load() {
		if subtle.ConstantTimeCompare(sum[:], h.sum[:]) == 1 {
			name, found = h.name, 1
		}
	}
	return name, found == 1
}

// KeyName returns the name of the API key of the request ctx belongs to,
// "" when none was required.
func KeyName(ctx context.Context) string {
	if info := infoOf(ctx); info != nil {
		return info.keyName
	}
	return ""
}

// authenticate requires Authorization: Bearer <key> with a key of keys.
func authenticate(keys *Keys, realm string) gin.HandlerFunc {
	challenge := fmt.Sprintf("Bearer realm=%q", realm)
	return func(c *gin.Context) {
		presented, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
		if !ok || presented == "" {
			c.Header("WWW-Authenticate", challenge)
			writeError(c, &apiError{http.StatusUnauthorized, "unauthorized", "an API key is required: Authorization: Bearer <key>"})
			return
		}
		name, ok := keys.Lookup(strings.TrimSpace(presented))
		if !ok {
			c.Header("WWW-Authenticate", challenge+`, error="invalid_token"`)
			writeError(c, &apiError{http.StatusUnauthorized, "unauthorized", "the API key is not valid"})
			return
		}
		withInfo(c).keyName = name
		c.Next()
	}
}

// RateLimit is a per-key request budget: Rate requests per second on
// average, bursts of Burst. The zero value is no limit.
type RateLimit struct {
	Rate  float64
	Burst int
}

// limiter gives each key name a token bucket of its own, so that one noisy
// caller cannot starve the rest.
type limiter struct {
	cfg     RateLimit
	buckets sync.Map // key name -> *rate.Limiter
}

func (l *limiter) limit(c *gin.Context) {
	name := KeyName(c.Request.Context())
	b, ok := l.buckets.Load(name)
	if !ok {
		b, _ = l.buckets.LoadOrStore(name, rate.NewLimiter(rate.Limit(l.cfg.Rate), max(l.cfg.Burst, 1)))
	}
	if !b.(*rate.Limiter).Allow() {
		c.Header("Retry-After", strconv.Itoa(int(math.Ceil(1/l.cfg.Rate))))
		writeError(c, &apiError{http.StatusTooManyRequests, "rate_limited",
			fmt.Sprintf("more than %g requests per second for this API key; retry later", l.cfg.Rate)})
		return
	}
	c.Next()
}
