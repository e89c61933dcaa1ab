package s3test

import (
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"
)

// Faults sits in front of an S3 handler (StartGoFakeS3Wrapped(t,
// faults.Wrap, ...)) and fails requests the ways a busy S3 does: an answer
// of 503 SlowDown with S3's XML error body, or a connection reset in the
// middle of the request body. It starts passing everything through, so a
// server can be set up before the faults are switched on.
type Faults struct {
	mu        sync.Mutex
	every     int                      // fail every Nth matching request; 0: none
	matched   int                      // matching requests since FailMatching
	match     func(*http.Request) bool // nil: every request
	p         float64                  // or fail each request with this probability
	perSecond float64                  // throttle above this request rate; 0: off
	tokens    float64
	last      time.Time
	stats     FaultStats
}

// FaultStats counts what the handler saw.
type FaultStats struct {
	Requests  int            // every request, failed or not
	SlowDowns int            // answered 503 SlowDown
	Drops     int            // connection reset mid-request
	Failed    map[string]int // SlowDowns and Drops by Op
	Succeeded map[string]int // passed through and answered 2xx, by Op
}

// Faults returns the number of failed requests.
func (s FaultStats) Faults() int { return s.SlowDowns + s.Drops }

// FailEvery fails every nth request from now on (0 stops failing).
// Failures alternate: the first answers SlowDown, the next drops the
// connection, and so on.
func (f *Faults) FailEvery(n int) { f.FailMatching(n, nil) }

// FailMatching is FailEvery for the requests match accepts; other requests
// pass through and do not count toward n.
func (f *Faults) FailMatching(n int, match func(*http.Request) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.every, f.match, f.matched, f.p = n, match, 0, 0
}

// FailRandomly fails each request with probability p (0 stops failing),
// independently of the others: unlike every Nth, it can fail one request
// several times running, as a store under load does. Failures alternate
// between SlowDown and a dropped connection as with FailEvery.
func (f *Faults) FailRandomly(p float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.every, f.match, f.p = 0, nil, p
}

// ThrottleAbove answers SlowDown to requests beyond perSecond on average
// (bursts of up to one second's worth pass), the way S3 throttles a prefix
// that gets too many requests; 0 turns it off.
func (f *Faults) ThrottleAbove(perSecond float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.perSecond, f.tokens, f.last = perSecond, perSecond, time.Now()
}

// ResetStats zeroes the counts, e.g. after setting a server up.
func (f *Faults) ResetStats() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stats = FaultStats{}
}

// Stats returns the counts so far.
func (f *Faults) Stats() FaultStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.stats
	s.Failed, s.Succeeded = maps.Clone(s.Failed), maps.Clone(s.Succeeded)
	return s
}

// count records one request of op as failed (kind slowDown or drop) or
// passed and answered 2xx (pass); f.mu is held.
func (f *Faults) count(op string, kind faultKind) {
	m := &f.stats.Succeeded
	switch kind {
	case slowDown:
		f.stats.SlowDowns++
		m = &f.stats.Failed
	case drop:
		f.stats.Drops++
		m = &f.stats.Failed
	}
	if *m == nil {
		*m = map[string]int{}
	}
	(*m)[op]++
}

type faultKind int

const (
	pass faultKind = iota
	slowDown
	drop
)

// decide counts r and says what to do with it.
func (f *Faults) decide(r *http.Request) faultKind {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stats.Requests++
	if f.perSecond > 0 {
		now := time.Now()
		f.tokens = min(f.perSecond, f.tokens+now.Sub(f.last).Seconds()*f.perSecond)
		f.last = now
		if f.tokens < 1 {
			f.count(Op(r), slowDown)
			return slowDown
		}
		f.tokens--
	}
	switch {
	case f.p > 0:
		if rand.Float64() >= f.p {
			return pass
		}
	case f.every <= 0 || (f.match != nil && !f.match(r)):
		return pass
	default:
		f.matched++
		if f.matched%f.every != 0 {
			return pass
		}
	}
	kind := slowDown
	if f.stats.Faults()%2 == 1 {
		kind = drop
	}
	f.count(Op(r), kind)
	return kind
}

// Wrap is the wrapper to hand StartGoFakeS3Wrapped.
func (f *Faults) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch f.decide(r) {
		case slowDown:
			// Answered after the body is read. The SDK sets Expect:
			// 100-continue on large bodies, but net/http never waits for the
			// 100 (the SDK's requests carry no HTTP version) and sends the
			// body at once; answering before reading it would make our close
			// reset it mid-body, and the client would see a reset, not 503.
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?>`+
				`<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>`+
				`<RequestId>kopsdr-faults</RequestId></Error>`)
		case drop:
			resetMidBody(w, r)
		default:
			sw := &statusWriter{ResponseWriter: w}
			h.ServeHTTP(sw, r)
			if sw.status < 300 { // 0: the handler wrote no header, so 200
				f.mu.Lock()
				f.count(Op(r), pass)
				f.mu.Unlock()
			}
		}
	})
}

// resetMidBody takes up to 1 MiB of the request body, so a part upload is
// cut off while it is under way, and then resets the connection.
func resetMidBody(w http.ResponseWriter, r *http.Request) {
	_, _ = io.CopyN(io.Discard, r.Body, 1<<20)
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic("s3test: cannot drop the connection: " + err.Error())
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // close with RST, as a reset by S3 looks
	}
	_ = conn.Close()
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Op names the S3 operation of a path-style request, for FailMatching and
// FaultStats.Succeeded.
func Op(r *http.Request) string {
	q := r.URL.Query()
	has := func(k string) bool { _, ok := q[k]; return ok }
	switch {
	case r.Method == http.MethodPost && has("uploads"):
		return "CreateMultipartUpload"
	case r.Method == http.MethodPut && has("partNumber"):
		return "UploadPart"
	case r.Method == http.MethodPost && has("uploadId"):
		return "CompleteMultipartUpload"
	case r.Method == http.MethodDelete && has("uploadId"):
		return "AbortMultipartUpload"
	case r.Method == http.MethodGet && has("uploads"):
		return "ListMultipartUploads"
	case r.Method == http.MethodPost && has("delete"):
		return "DeleteObjects"
	default:
		return r.Method
	}
}
