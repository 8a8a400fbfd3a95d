package main

import (
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// earlyS: an open-loop request is sent when the timer fires this much before it is due, so that the
	// timer's own wake-up delay does not make it late; an early request's latency counts from its actual send.
	earlyS = 100e-6
	// heartbeatS: how often a closed-loop engine checks that it is responsive (its lag figure).
	heartbeatS = 0.01
)

type levelSpec struct {
	Index       int     `json:"index"`
	Workers     int     `json:"workers"`
	Closed      bool    `json:"closed"`
	Concurrency int     `json:"concurrency"`
	Rate        float64 `json:"rate"`
	Poisson     bool    `json:"poisson"`
	MaxInFlight int     `json:"max_in_flight"`
	StartAt     float64 `json:"start_at"`
	Warmup      float64 `json:"warmup"`
	Duration    float64 `json:"duration"`
	Timeout     float64 `json:"timeout"`
	Interval    float64 `json:"interval"`
	Seed        int64   `json:"seed"`
	AbortAfter  float64 `json:"abort_after"`
}

type sender interface {
	open(timeout float64) error
	send(index int, deadline float64) outcome
	close()
}

// stallHook is the test hook LOADTEST_TEST_STALL=MS:EVERY (docs/loadtest.md): before every EVERY-th request of
// a level the engine stops for MS ms, everything in it (sends, answers, the heartbeat) waiting at the gate, as
// the Python tester's blocked event loop did.
type stallHook struct {
	pause     time.Duration
	every     int
	gate      sync.RWMutex
	mu        sync.Mutex
	countdown int
	stalls    int
}

func (s *stallHook) reset() { s.countdown, s.stalls = s.every, 0 }

// pass waits while a stall is under way.
func (s *stallHook) pass() {
	if s != nil {
		s.gate.RLock()
		s.gate.RUnlock()
	}
}

// before counts one request and stalls before every EVERY-th.
func (s *stallHook) before() {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.countdown--
	due := s.countdown == 0
	if due {
		s.countdown = s.every
		s.stalls++
	}
	s.mu.Unlock()
	if due {
		s.gate.Lock()
		time.Sleep(s.pause)
		s.gate.Unlock()
	}
	s.pass()
}

func runLevel(l *levelSpec, t *target, hook *stallHook) map[string]any {
	r := newRecorder(l, t.expect)
	if hook != nil {
		hook.reset()
	}
	var cpuMu sync.Mutex
	cpuStart, cpuEnd := math.NaN(), math.NaN()
	go func() { // the CPU marks: the measured window only
		w, err := newWaiter()
		if err != nil {
			return
		}
		defer w.close()
		w.until(r.tMeasure)
		cpuMu.Lock()
		cpuStart = cpuSeconds()
		cpuMu.Unlock()
		w.until(r.tEnd)
		cpuMu.Lock()
		if math.IsNaN(cpuEnd) {
			cpuEnd = cpuSeconds()
		}
		cpuMu.Unlock()
	}()
	w, err := newWaiter()
	if err != nil {
		panic(err)
	}
	defer w.close()
	w.until(l.StartAt)
	if l.Closed {
		closedLoop(l, t, r, hook)
	} else {
		openLoop(l, t, r, hook, w)
	}
	cpuMu.Lock()
	if math.IsNaN(cpuEnd) {
		cpuEnd = cpuSeconds()
	}
	if math.IsNaN(cpuStart) {
		cpuStart = cpuEnd
	}
	cpu := cpuEnd - cpuStart
	cpuMu.Unlock()
	stalls := 0
	if hook != nil {
		stalls = hook.stalls
	}
	return r.result(cpu, stalls)
}

func closedLoop(l *levelSpec, t *target, r *recorder, hook *stallHook) {
	n := len(t.expect)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // heartbeat: how late the engine wakes, as the client's own lag
		defer wg.Done()
		w, err := newWaiter()
		if err != nil {
			return
		}
		defer w.close()
		for !r.stop.Load() {
			due := now() + heartbeatS
			if due >= r.tEnd {
				return
			}
			w.until(due)
			hook.pass()
			if due >= r.tMeasure {
				lag := math.Max(now()-due, 0)
				r.mu.Lock()
				_ = r.lag.RecordValue(micros(lag))
				r.mu.Unlock()
			}
		}
	}()
	for u := 0; u < l.Concurrency; u++ {
		wg.Add(1)
		go func(u int) {
			defer wg.Done()
			index := (l.Index*7919 + u*104729) % n
			for !r.stop.Load() {
				hook.before()
				sent := now()
				if sent >= r.tEnd {
					return
				}
				o := t.sender.send(index, sent+l.Timeout)
				hook.pass()
				done := now()
				r.mu.Lock()
				if sent >= r.tMeasure {
					r.requests++
					r.sent++
				}
				r.record(index, &o, sent, sent, done)
				r.mu.Unlock()
				index = (index + 1) % n
			}
		}(u)
	}
	wg.Wait()
}

// intendedTimes yields this engine's intended send times: every `workers`-th slot of one fixed grid, or an
// independent Poisson stream of rate/workers.
func intendedTimes(l *levelSpec) func() float64 {
	if l.Poisson {
		rng := rand.New(rand.NewPCG(uint64(l.Seed), uint64(l.Index)))
		scale := float64(l.Workers) / l.Rate
		t := l.StartAt
		return func() float64 {
			t += rng.ExpFloat64() * scale
			return t
		}
	}
	period := 1.0 / l.Rate
	j := l.Index
	return func() float64 {
		t := l.StartAt + float64(j)*period
		j += l.Workers
		return t
	}
}

func openLoop(l *levelSpec, t *target, r *recorder, hook *stallHook, w *waiter) {
	n := len(t.expect)
	index := (l.Index * 7919) % n
	slots := make(chan struct{}, max(l.MaxInFlight, 1))
	var freedAt atomic.Uint64 // float64 bits: when the last slot was freed
	freedAt.Store(math.Float64bits(l.StartAt))
	var pending sync.WaitGroup
	// Sender goroutines live for the level and take the next request when idle (a new one only when none
	// is): a goroutine per request would grow a fresh stack every time.
	jobs := make(chan job)
	run := func(j job) {
		o := t.sender.send(j.index, j.deadline)
		hook.pass()
		done := now()
		freedAt.Store(math.Float64bits(done))
		<-slots
		r.mu.Lock()
		r.record(j.index, &o, j.intended, j.sent, done)
		r.mu.Unlock()
		pending.Done()
	}
	sendLoop := func(first job) {
		run(first)
		for j := range jobs {
			run(j)
		}
	}
	next := intendedTimes(l)
	for !r.stop.Load() {
		intended := next()
		if intended >= r.tEnd {
			break
		}
		w.until(intended - earlyS)
		hook.before()
		ready := intended
		select {
		case slots <- struct{}{}:
		default: // every slot busy: wait for one; the request's latency still counts from its intended time
			select {
			case slots <- struct{}{}:
				ready = math.Max(intended, math.Float64frombits(freedAt.Load()))
			case <-r.stopCh:
			}
		}
		if r.stop.Load() {
			break
		}
		sent := now()
		budget := l.Timeout - math.Max(sent-intended, 0)
		r.mu.Lock()
		if intended >= r.tMeasure {
			r.requests++
			_ = r.lag.RecordValue(micros(math.Max(sent-ready, 0)))
		}
		if r.tMeasure <= sent && sent < r.tEnd && budget > 0 {
			r.sent++
		}
		if budget <= 0 {
			o := outcome{kind: kindTimeout, detail: "still waiting for a free slot at its deadline"}
			r.record(index, &o, intended, sent, sent)
			r.mu.Unlock()
			<-slots
		} else {
			r.mu.Unlock()
			pending.Add(1)
			j := job{index: index, intended: intended, sent: sent, deadline: sent + budget}
			select {
			case jobs <- j: // an idle sender takes it
			default:
				go sendLoop(j)
			}
		}
		index = (index + 1) % n
	}
	finished := make(chan struct{})
	go func() { pending.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(time.Duration((l.Timeout + 1) * 1e9)):
	}
	close(jobs)
}

// job is one open-loop request handed to a sender goroutine.
type job struct {
	index                    int
	intended, sent, deadline float64
}
