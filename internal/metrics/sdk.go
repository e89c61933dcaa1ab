package metrics

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
)

// SDKHandler is the client.MetricsHandler to put in the Temporal client's
// options: what the SDK counts (requests, polls, task latencies, slots) then
// appears on /metrics under the SDK's own names (temporal_request,
// temporal_activity_execution_latency, ...), timers as histograms in seconds.
//
// It is written against client_golang rather than taken from
// go.temporal.io/sdk/contrib/tally because that module cannot be had here
// (the module proxy answers 404 for it) and its tally reporter would be a
// second metrics library beside the client_golang kopsdr already links.
// The SDK emits one metric name with different tag sets (a failure adds
// tags the success lacks), which client_golang's Vecs refuse; a collector
// that keeps each series as it comes has no such limit.
func (m *Metrics) SDKHandler() client.MetricsHandler {
	return sdkHandler{c: m.sdk}
}

// timerBuckets span a fast RPC (1 ms) to a long poll or a long activity.
var timerBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}

type sdkHandler struct {
	c    *sdkCollector
	tags map[string]string
}

func (h sdkHandler) WithTags(tags map[string]string) client.MetricsHandler {
	merged := maps.Clone(h.tags)
	if merged == nil {
		merged = map[string]string{}
	}
	maps.Copy(merged, tags)
	return sdkHandler{c: h.c, tags: merged}
}

func (h sdkHandler) Counter(name string) client.MetricsCounter {
	s := h.c.series(prometheus.CounterValue, name, h.tags)
	return counterFunc(func(d int64) { s.add(float64(d)) })
}

func (h sdkHandler) Gauge(name string) client.MetricsGauge {
	s := h.c.series(prometheus.GaugeValue, name, h.tags)
	return gaugeFunc(s.set)
}

func (h sdkHandler) Timer(name string) client.MetricsTimer {
	s := h.c.series(prometheus.UntypedValue, name, h.tags) // untyped marks a histogram here
	return timerFunc(func(d time.Duration) { s.observe(d.Seconds()) })
}

// The SDK's Func adapters are internal; these are the same three.
type (
	counterFunc func(int64)
	gaugeFunc   func(float64)
	timerFunc   func(time.Duration)
)

func (f counterFunc) Inc(d int64)          { f(d) }
func (f gaugeFunc) Update(v float64)       { f(v) }
func (f timerFunc) Record(d time.Duration) { f(d) }

// sdkCollector keeps every series the SDK has touched. It is an unchecked
// collector (Describe sends nothing), as its names are only known as the
// SDK uses them.
type sdkCollector struct {
	mu  sync.Mutex
	all map[string]*sdkSeries // by kind, name and sorted tags
}

func newSDKCollector() *sdkCollector { return &sdkCollector{all: map[string]*sdkSeries{}} }

type sdkSeries struct {
	kind   prometheus.ValueType
	desc   *prometheus.Desc
	values []string

	mu      sync.Mutex
	value   float64  // counter or gauge
	buckets []uint64 // histogram: count per timerBuckets bound (not cumulative)
	count   uint64
	sum     float64
	used    atomic.Bool // a series the SDK created but never wrote is not exposed
}

// series returns the series for name and tags, creating it on first use.
func (c *sdkCollector) series(kind prometheus.ValueType, name string, tags map[string]string) *sdkSeries {
	keys := slices.Sorted(maps.Keys(tags))
	var id strings.Builder
	id.WriteString(string(rune('0' + kind)))
	id.WriteString(name)
	values := make([]string, len(keys))
	labels := make([]string, len(keys))
	for i, k := range keys {
		labels[i], values[i] = sanitize(k), tags[k]
		id.WriteString("\xff" + k + "\xfe" + values[i])
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.all[id.String()]; ok {
		return s
	}
	s := &sdkSeries{kind: kind, values: values,
		desc: prometheus.NewDesc(sanitize(name), "Temporal Go SDK metric "+name+".", labels, nil)}
	if kind == prometheus.UntypedValue {
		s.buckets = make([]uint64, len(timerBuckets))
	}
	c.all[id.String()] = s
	return s
}

func (s *sdkSeries) add(d float64) { s.mu.Lock(); s.value += d; s.mu.Unlock(); s.used.Store(true) }
func (s *sdkSeries) set(v float64) { s.mu.Lock(); s.value = v; s.mu.Unlock(); s.used.Store(true) }

func (s *sdkSeries) observe(v float64) {
	s.mu.Lock()
	if i, _ := slices.BinarySearch(timerBuckets, v); i < len(timerBuckets) {
		s.buckets[i]++
	}
	s.count++
	s.sum += v
	s.mu.Unlock()
	s.used.Store(true)
}

func (c *sdkCollector) Describe(chan<- *prometheus.Desc) {}

func (c *sdkCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	all := slices.Collect(maps.Values(c.all))
	c.mu.Unlock()
	for _, s := range all {
		if !s.used.Load() {
			continue
		}
		s.mu.Lock()
		var m prometheus.Metric
		var err error
		if s.kind == prometheus.UntypedValue {
			cum := make(map[float64]uint64, len(timerBuckets))
			var n uint64
			for i, b := range timerBuckets {
				n += s.buckets[i]
				cum[b] = n
			}
			m, err = prometheus.NewConstHistogram(s.desc, s.count, s.sum, cum, s.values...)
		} else {
			m, err = prometheus.NewConstMetric(s.desc, s.kind, s.value, s.values...)
		}
		s.mu.Unlock()
		if err != nil {
			m = prometheus.NewInvalidMetric(s.desc, err)
		}
		ch <- m
	}
}

// sanitize makes a Prometheus metric or label name: the SDK's names are
// already valid, but a tag key from a user's WithTags may not be.
func sanitize(name string) string {
	b := []byte(name)
	for i, r := range b {
		ok := r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9'
		if !ok {
			b[i] = '_'
		}
	}
	return string(b)
}
