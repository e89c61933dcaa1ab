package fakeec2

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
)

// apiVersion is the only EC2 API version the SDK speaks; a request for any
// other is refused so that a hand-rolled client cannot drift silently.
const apiVersion = "2016-11-15"

// Server is a fake EC2 endpoint. Its zero value is not usable; build it with
// New or Start. All methods are safe for concurrent use.
type Server struct {
	region  string
	account string
	delay   time.Duration
	now     func() time.Time

	mu        sync.Mutex
	srv       *httptest.Server
	seq       uint64 // orders objects by creation and makes ids unique
	instances map[string]*instance
	volumes   map[string]*volume
	snapshots map[string]*snapshot
	tokens    map[string]clientToken // CreateVolume ClientToken -> first call
	faults    []*Fault
	calls     []Call
	onReboot  func(instanceID string)
}

// Option configures a Server.
type Option func(*Server)

// WithRegion sets the region the server pretends to be (default us-east-1).
// Availability zones are this name plus one letter.
func WithRegion(region string) Option { return func(s *Server) { s.region = region } }

// WithRebootHook calls fn, in a goroutine of its own, for every instance a
// RebootInstances call reboots: a test restarts what runs "on" the
// instance (its containers) as a reboot would.
func WithRebootHook(fn func(instanceID string)) Option {
	return func(s *Server) { s.onReboot = fn }
}

// WithAccountID sets the account that owns everything (default 123456789012).
func WithAccountID(id string) Option { return func(s *Server) { s.account = id } }

// WithTransitionDelay sets how long every state transition takes (volume
// creating->available, snapshot pending->completed, attach, detach,
// instance stop/start). Default 200ms; 0 completes on the next read.
func WithTransitionDelay(d time.Duration) Option { return func(s *Server) { s.delay = d } }

// WithClock replaces time.Now, so that a test can move time by hand and
// observe intermediate states without sleeping.
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// New builds a server that is not yet listening: call Start, or use it as an
// http.Handler.
func New(opts ...Option) *Server {
	s := &Server{
		region:    "us-east-1",
		account:   "123456789012",
		delay:     200 * time.Millisecond,
		now:       time.Now,
		instances: map[string]*instance{},
		volumes:   map[string]*volume{},
		snapshots: map[string]*snapshot{},
		tokens:    map[string]clientToken{},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Start builds a server, serves it on 127.0.0.1 and closes it when the test
// ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := New(opts...)
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// Start serves the server on a random 127.0.0.1 port. Calling it twice
// panics.
func (s *Server) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		panic("fakeec2: Start called twice")
	}
	s.srv = httptest.NewServer(s)
}

// Close stops serving. State stays readable.
func (s *Server) Close() {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// URL is the endpoint to use as the SDK's BaseEndpoint ("" before Start).
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return ""
	}
	return s.srv.URL
}

// Region is the region the server pretends to be.
func (s *Server) Region() string { return s.region }

// AccountID is the account that owns every resource.
func (s *Server) AccountID() string { return s.account }

// DefaultKMSKeyARN is the ARN of the account's AWS-managed aws/ebs key, the
// key EC2 uses when a volume is encrypted and no key is named.
func (s *Server) DefaultKMSKeyARN() string {
	return "arn:aws:kms:" + s.region + ":" + s.account + ":key/0e6f4a2b-7c1d-4e58-9a3b-ebs0default1"
}

// Client returns a real SDK client for this server: static credentials,
// the server's region, BaseEndpoint=URL and the SDK's standard retryer.
// Only the retryer's backoff is shortened (to 10ms) so retried faults keep
// tests fast; which errors are retried is the SDK's own decision. optFns
// run last and may override anything.
func (s *Server) Client(t testing.TB, optFns ...func(*ec2.Options)) *ec2.Client {
	t.Helper()
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv == nil {
		t.Fatal("fakeec2: Client called before Start")
	}
	cfg := aws.Config{
		Region:      s.region,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDFAKEEC2", "fakeec2-secret", ""),
		HTTPClient:  srv.Client(),
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxBackoff = 10 * time.Millisecond })
		},
	}
	return ec2.NewFromConfig(cfg, func(o *ec2.Options) {
		o.BaseEndpoint = aws.String(srv.URL)
		for _, fn := range optFns {
			fn(o)
		}
	})
}

// Always, as Fault.Times, makes a fault fire on every matching call.
const Always = -1

// Fault makes matching calls fail. Faults are tried in the order they were
// injected; the first one that matches and has Times left fires.
type Fault struct {
	// Action is the EC2 action to fail ("" = any action).
	Action string
	// Code is the EC2 error code, e.g. RequestLimitExceeded (throttling,
	// HTTP 503), InternalError (HTTP 500), Unavailable (HTTP 503),
	// IncorrectState, InvalidVolume.NotFound. Default InternalError.
	Code string
	// Message defaults to a short text naming the fault.
	Message string
	// HTTPStatus defaults to what EC2 sends with Code: 500 for
	// InternalError, 503 for RequestLimitExceeded and Unavailable, 412
	// for DryRunOperation, 400 otherwise.
	HTTPStatus int
	// Times is how many matching calls fail: 0 means once, Always means
	// every one until ClearFaults.
	Times int
	// Match, if set, limits the fault to requests whose form it accepts.
	// It runs under the server's lock and must not call the Server.
	Match func(form url.Values) bool
	// AfterEffect performs the action and then answers the error instead
	// of the result: the caller cannot know that it took effect, like a
	// response lost on the network.
	AfterEffect bool
}

// InjectFault adds a fault. The Fault is copied.
func (s *Server) InjectFault(f Fault) {
	if f.Times == 0 {
		f.Times = 1
	}
	if f.Code == "" {
		f.Code = "InternalError"
	}
	if f.Message == "" {
		f.Message = "fakeec2: injected " + f.Code
	}
	if f.HTTPStatus == 0 {
		f.HTTPStatus = statusFor(f.Code)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
}

// ClearFaults removes every fault, fired or not.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// takeFault returns the fault that fires for this call, if any. s.mu held.
func (s *Server) takeFault(action string, form url.Values) *Fault {
	for _, f := range s.faults {
		if f.Times == 0 || (f.Action != "" && f.Action != action) {
			continue
		}
		if f.Match != nil && !f.Match(form) {
			continue
		}
		if f.Times > 0 {
			f.Times--
		}
		return f
	}
	return nil
}

// Call is one request the server answered.
type Call struct {
	Action string
	// Params is the request form without Action and Version.
	Params url.Values
	// Code is the error code answered, "" on success.
	Code string
	// Injected is true when Code came from InjectFault.
	Injected bool
	// Replayed is true when a CreateVolume ClientToken matched an
	// earlier call, so the call created nothing.
	Replayed bool
	// At is the server-clock time of the call.
	At time.Time
}

// Calls returns every call answered so far, oldest first.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Call, len(s.calls))
	for i, c := range s.calls {
		c.Params = cloneValues(c.Params)
		out[i] = c
	}
	return out
}

// CallsTo returns the calls of one action, oldest first.
func (s *Server) CallsTo(action string) []Call {
	return slices.DeleteFunc(s.Calls(), func(c Call) bool { return c.Action != action })
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}

// handler is one action: it reads the form and returns the body of the
// <ActionResponse> element, or an *apiError. It runs with s.mu held.
type handler func(s *Server, r *request) (any, error)

var handlers = map[string]handler{
	"DescribeInstances": (*Server).describeInstances,
	"StartInstances":    (*Server).startInstances,
	"StopInstances":     (*Server).stopInstances,
	"RebootInstances":   (*Server).rebootInstances,
	"DescribeVolumes":   (*Server).describeVolumes,
	"CreateVolume":      (*Server).createVolume,
	"DeleteVolume":      (*Server).deleteVolume,
	"AttachVolume":      (*Server).attachVolume,
	"DetachVolume":      (*Server).detachVolume,
	"CreateSnapshot":    (*Server).createSnapshot,
	"DescribeSnapshots": (*Server).describeSnapshots,
	"DeleteSnapshot":    (*Server).deleteSnapshot,
	"CreateTags":        (*Server).createTags,
	"DeleteTags":        (*Server).deleteTags,
}

// ServeHTTP answers one EC2 Query request.
func (s *Server) ServeHTTP(w http.ResponseWriter, hr *http.Request) {
	reqID := newRequestID()
	if hr.Method != http.MethodPost {
		writeError(w, reqID, errorf("InvalidAction", "fakeec2 only answers POST, got %s", hr.Method))
		return
	}
	if err := hr.ParseForm(); err != nil {
		writeError(w, reqID, errorf("MalformedQueryString", "%v", err))
		return
	}
	action := hr.PostForm.Get("Action")
	body, err := s.handle(action, hr.PostForm)
	if err != nil {
		writeError(w, reqID, err)
		return
	}
	writeResult(w, reqID, action, body)
}

// handle runs one action and records the call. The whole action runs under
// one lock: the fake is for correctness, not throughput, and one lock makes
// every action atomic as EC2 promises. The body it returns shares no
// memory with the state, so it is written after the lock is released.
func (s *Server) handle(action string, form url.Values) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.advance(now)

	params := cloneValues(form)
	delete(params, "Action")
	delete(params, "Version")
	call := Call{Action: action, Params: params, At: now}
	r := &request{form: form, now: now}
	body, err := s.dispatch(action, r, &call)
	call.Replayed = r.replayed
	if err != nil {
		call.Code = err.Code
	}
	s.calls = append(s.calls, call)
	return body, err
}

// dispatch checks the envelope, fires faults and runs the action.
func (s *Server) dispatch(action string, r *request, call *Call) (any, *apiError) {
	h, ok := handlers[action]
	switch {
	case action == "":
		return nil, errorf("MissingAction", "The request must contain the parameter Action")
	case !ok:
		return nil, errorf("InvalidAction", "The action %s is not valid for this web service.", action)
	case r.form.Get("Version") != apiVersion:
		return nil, errorf("InvalidParameterValue", "Version %q is not supported; fakeec2 speaks %s", r.form.Get("Version"), apiVersion)
	}
	f := s.takeFault(action, r.form)
	if f != nil && !f.AfterEffect {
		call.Injected = true
		return nil, f.asError()
	}
	if r.bool("DryRun") {
		return nil, errorf("DryRunOperation", "Request would have succeeded, but DryRun flag is set.")
	}
	body, err := h(s, r)
	if f != nil {
		call.Injected = true
		return nil, f.asError()
	}
	if err != nil {
		return nil, asAPIError(err)
	}
	return body, nil
}

func (f *Fault) asError() *apiError {
	return &apiError{Code: f.Code, Message: f.Message, Status: f.HTTPStatus}
}
