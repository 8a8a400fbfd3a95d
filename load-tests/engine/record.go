package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// The histograms' range and precision: whole microseconds from 1 µs to 10 minutes, 3 significant digits
// (the per-interval ones 2), as load-tests/src/loadtest/stats.py reads them.
const (
	lowestUS       = 1
	highestUS      = 600_000_000
	digits         = 3
	intervalDigits = 2
	// maxDistinct bounds the distinct non-identical answers kept for the Python side's check.
	maxDistinct = 65536
	kindTimeout = "timeout"
)

// outcome is what a sender makes of one request: an error kind and detail, or the answer's output.
type outcome struct {
	kind     string // "" for an answer
	detail   string
	datatype string
	shape    []int64
	raw      []byte
}

type expectation struct {
	dims  []int64
	bytes []byte // the reference, float32 little-endian
}

type slot struct {
	answered, failed int
	latency          *hdr.Histogram
}

// recorder is one level's bookkeeping, the same rules as the Python tester had (docs/loadtest.md): latency
// belongs to the request's intended time, throughput to its answer's arrival, a timeout counts in the latency
// figures at its time to the deadline (at least the timeout).
type recorder struct {
	mu                sync.Mutex
	tMeasure, tEnd    float64
	interval, timeout float64
	abortAfter        float64
	expect            []expectation
	latency, service  *hdr.Histogram
	lag               *hdr.Histogram
	slots             map[int]*slot
	requests, sent    int
	answeredInWindow  int
	ok, exact         int
	unchecked         int
	errors            map[string]int
	examples          map[string]string
	distinct          map[string]int
	lastOK            float64
	aborted           string
	closed            bool
	stop              atomic.Bool
	stopCh            chan struct{}
	stopOnce          sync.Once
}

func newRecorder(l *levelSpec, expect []expectation) *recorder {
	tMeasure := l.StartAt + l.Warmup
	return &recorder{
		tMeasure: tMeasure, tEnd: tMeasure + l.Duration, interval: l.Interval, timeout: l.Timeout,
		abortAfter: l.AbortAfter, expect: expect,
		latency: newHist(digits), service: newHist(digits), lag: newHist(digits),
		slots: map[int]*slot{}, errors: map[string]int{}, examples: map[string]string{},
		distinct: map[string]int{}, lastOK: l.StartAt, stopCh: make(chan struct{}),
	}
}

func newHist(d int) *hdr.Histogram { return hdr.New(lowestUS, highestUS, d) }

func micros(seconds float64) int64 {
	us := math.RoundToEven(seconds * 1e6)
	return int64(math.Min(math.Max(us, lowestUS), highestUS))
}

func (r *recorder) halt() {
	r.stop.Store(true)
	r.stopOnce.Do(func() { close(r.stopCh) })
}

func (r *recorder) slotAt(t float64) *slot {
	index := int(math.Floor((t - r.tMeasure) / r.interval))
	s := r.slots[index]
	if s == nil {
		s = &slot{}
		r.slots[index] = s
	}
	return s
}

func (r *recorder) slotLatency(t float64, seconds float64) {
	s := r.slotAt(t)
	if s.latency == nil {
		s.latency = newHist(intervalDigits)
	}
	_ = s.latency.RecordValue(micros(seconds))
}

// record files one finished request (intended == sent in closed loop). Callers hold r.mu.
func (r *recorder) record(index int, o *outcome, intended, sent, done float64) {
	if r.closed {
		return
	}
	if o.kind == "" {
		r.check(index, o)
	}
	if o.kind != "" {
		if o.kind == "unavailable" && done-r.lastOK > r.abortAfter && !r.stop.Load() {
			r.aborted = fmt.Sprintf("unavailable for %.1f s: %s", done-r.lastOK, clip(o.detail, 200))
			r.halt()
		}
		if intended >= r.tMeasure {
			r.slotAt(intended).failed++
			r.errors[o.kind]++
			if _, seen := r.examples[o.kind]; !seen {
				r.examples[o.kind] = clip(o.detail, 300)
			}
			if o.kind == kindTimeout {
				seconds := math.Max(done-intended, r.timeout)
				_ = r.latency.RecordValue(micros(seconds))
				r.slotLatency(intended, seconds)
			}
		}
		return
	}
	r.lastOK = done
	if r.tMeasure <= done && done < r.tEnd {
		r.answeredInWindow++
		r.slotAt(done).answered++
	}
	if intended < r.tMeasure {
		return
	}
	r.ok++
	from := sent
	if intended < sent {
		from = intended
	}
	_ = r.latency.RecordValue(micros(done - from))
	_ = r.service.RecordValue(micros(done - sent))
	r.slotLatency(intended, done-from)
	if o.datatype == "FP32" && bytes.Equal(o.raw, r.expect[index].bytes) {
		r.exact++
		return
	}
	key := fmt.Sprintf("%d\x00%s\x00%s", index, o.datatype, o.raw)
	if _, seen := r.distinct[key]; seen || len(r.distinct) < maxDistinct {
		r.distinct[key]++
	} else {
		r.unchecked++
	}
}

// check turns an answer of the wrong shape or size into a bad_response.
func (r *recorder) check(index int, o *outcome) {
	want := r.expect[index].dims
	if !sameDims(o.shape, want) {
		o.kind, o.detail = "bad_response", fmt.Sprintf("%s probabilities, expected %s", pyTuple(o.shape), pyTuple(want))
		return
	}
	size, known := dtypeSize[o.datatype]
	count := int64(1)
	for _, d := range o.shape {
		count *= d
	}
	if !known || int64(len(o.raw)) != count*size {
		o.kind, o.detail = "bad_response", fmt.Sprintf("%d bytes of %s for shape %s", len(o.raw), o.datatype, pyTuple(o.shape))
	}
}

// dtypeSize: the output datatypes the Python check reads (engine.py), and their sizes.
var dtypeSize = map[string]int64{"FP32": 4, "FP16": 2, "FP64": 8}

func sameDims(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// pyTuple formats a shape as Python prints a tuple: (1, 6), (6,), ().
func pyTuple(shape []int64) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = fmt.Sprint(d)
	}
	if len(parts) == 1 {
		return "(" + parts[0] + ",)"
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func encode(h *hdr.Histogram) string {
	b, err := h.Encode(hdr.V2CompressedEncodingCookieBase)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// result is the level's figures for the Python side (load-tests/src/loadtest/engine.py reads them).
func (r *recorder) result(cpu float64, stalls int) map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	intervals := map[string]any{}
	for index, s := range r.slots {
		h := s.latency
		if h == nil {
			h = newHist(intervalDigits)
		}
		intervals[fmt.Sprint(index)] = []any{s.answered, s.failed, encode(h)}
	}
	answers := make([][]any, 0, len(r.distinct))
	for key, count := range r.distinct {
		parts := strings.SplitN(key, "\x00", 3)
		var index int
		fmt.Sscan(parts[0], &index)
		answers = append(answers, []any{index, parts[1], base64.StdEncoding.EncodeToString([]byte(parts[2])), count})
	}
	var aborted any
	if r.aborted != "" {
		aborted = r.aborted
	}
	return map[string]any{
		"latency": encode(r.latency), "service": encode(r.service), "lag": encode(r.lag),
		"intervals": intervals, "requests": r.requests, "sent_in_window": r.sent,
		"answered_in_window": r.answeredInWindow, "ok": r.ok, "errors": r.errors,
		"error_examples": r.examples, "exact": r.exact, "answers": answers, "unchecked": r.unchecked,
		"cpu_seconds": cpu, "aborted": aborted, "test_stalls": stalls,
	}
}
