package main

import (
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"
)

// The KServe v2 method; requests are ModelInferRequest messages serialized by the Python side once, answers
// are read with a few lines of protobuf wire parsing (only the `probabilities` output is wanted).
const (
	grpcInfer  = "/inference.GRPCInferenceService/ModelInfer"
	outputName = "probabilities"
	// redialAfter: after a failed connection attempt, calls fail at once for this long before the next attempt
	// (a server that is down is not dialled once per request).
	redialAfter = time.Second
)

// grpcSender makes unary ModelInfer calls on one HTTP/2 connection (h2conn), opening a new one when the
// server ends it.
type grpcSender struct {
	addr     string
	messages [][]byte // each request as a gRPC message: flag, length, bytes
	block    []byte
	calls    sync.Pool

	connectTimeout time.Duration

	mu       sync.Mutex
	conn     *h2conn
	failedAt time.Time
	failure  string
}

func newGrpcSender(addr string, payloads [][]byte) *grpcSender {
	g := &grpcSender{addr: addr, block: requestBlock(addr, grpcInfer)}
	for _, p := range payloads {
		m := make([]byte, 5, 5+len(p))
		binary.BigEndian.PutUint32(m[1:], uint32(len(p)))
		g.messages = append(g.messages, append(m, p...))
	}
	g.calls.New = func() any {
		t := time.NewTimer(time.Hour)
		t.Stop()
		return &call{done: make(chan struct{}, 1), timer: t}
	}
	return g
}

// open connects, trying again until the timeout while the server is not there yet.
func (g *grpcSender) open(timeout float64) error {
	g.connectTimeout = time.Duration(timeout * 1e9)
	until := time.Now().Add(g.connectTimeout)
	for {
		c, err := dialH2(g.addr, g.block, max(time.Until(until), time.Millisecond))
		if err == nil {
			g.conn = c
			return nil
		}
		if time.Until(until) <= 0 {
			return fmt.Errorf("no gRPC connection to %s within %.0f s: %s", g.addr, timeout, reason(err))
		}
		time.Sleep(min(100*time.Millisecond, time.Until(until)))
	}
}

// current is the connection to start a call on: the open one, or a new one when the server ended it.
func (g *grpcSender) current() (*h2conn, string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conn != nil && g.conn.usable() {
		return g.conn, ""
	}
	if time.Since(g.failedAt) < redialAfter {
		return nil, g.failure
	}
	c, err := dialH2(g.addr, g.block, g.connectTimeout)
	if err != nil {
		g.failedAt, g.failure = time.Now(), fmt.Sprintf("cannot connect to %s: %s", g.addr, reason(err))
		return nil, g.failure
	}
	g.conn = c
	return c, ""
}

// send makes one call; one the server did not process (a refused stream, a GOAWAY) is tried again, twice
// at most.
func (g *grpcSender) send(index int, deadline float64) outcome {
	budget := deadline - now()
	if budget <= 0 {
		return outcome{kind: kindTimeout, detail: "its deadline passed before it was sent"}
	}
	c := g.calls.Get().(*call)
	defer g.calls.Put(c)
	var o outcome
	for range 3 {
		c.reset(g.messages[index])
		if o = g.attempt(c, deadline, budget); o.kind != kindRetry {
			return o
		}
	}
	o.kind = "unavailable"
	return o
}

func (g *grpcSender) attempt(c *call, deadline, budget float64) outcome {
	h, failure := g.current()
	if h == nil {
		return outcome{kind: "unavailable", detail: failure}
	}
	if !h.start(c) {
		return outcome{kind: kindRetry, detail: "the server takes no new streams"}
	}
	c.timer.Reset(time.Duration(max(deadline-now(), 0) * 1e9))
	select {
	case <-c.done:
		c.timer.Stop()
	case <-c.timer.C:
		if h.cancel(c) {
			return outcome{kind: kindTimeout, detail: fmt.Sprintf("no answer within %.3g s", budget)}
		}
		<-c.done
	}
	o := c.result
	c.result = outcome{}
	return o
}

func (g *grpcSender) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conn != nil {
		g.conn.close()
	}
}

func grpcCode(code int) codes.Code { return codes.Code(uint32(code)) }

// grpcKind names an error as the report does: unavailable, timeout, cancelled, or grpc_<status>.
func grpcKind(code codes.Code) string {
	switch code {
	case codes.Unavailable:
		return "unavailable"
	case codes.DeadlineExceeded:
		return kindTimeout
	case codes.Canceled:
		return "cancelled"
	}
	return "grpc_" + strings.ToLower(grpcName(code))
}

// grpcName is the status's canonical name (RESOURCE_EXHAUSTED), as grpcio's StatusCode names it.
func grpcName(code codes.Code) string {
	var out strings.Builder
	for i, c := range code.String() {
		if i > 0 && c >= 'A' && c <= 'Z' {
			out.WriteByte('_')
		}
		out.WriteRune(c)
	}
	name := strings.ToUpper(out.String())
	if code == codes.Canceled {
		return "CANCELLED"
	}
	return name
}

// parseInferResponse finds the `probabilities` output of a ModelInferResponse: its datatype and shape
// (field 5, InferOutputTensor) and its bytes (field 6, raw_output_contents, in the order of the outputs).
func parseInferResponse(b []byte, o *outcome) {
	target, outputs := -1, 0
	var raws [][]byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			o.kind, o.detail = "bad_response", "malformed ModelInferResponse"
			return
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == 5 || num == 6) {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				o.kind, o.detail = "bad_response", "malformed ModelInferResponse"
				return
			}
			if num == 5 {
				if name, datatype, shape, ok := parseOutputTensor(v); ok && name == outputName && target < 0 {
					target, o.datatype, o.shape = outputs, datatype, shape
				}
				outputs++
			} else {
				raws = append(raws, v)
			}
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			o.kind, o.detail = "bad_response", "malformed ModelInferResponse"
			return
		}
		b = b[m:]
	}
	switch {
	case target < 0:
		o.kind, o.detail = "bad_response", "no "+outputName+" output in the answer"
	case target >= len(raws):
		o.kind, o.detail = "bad_response", "no raw contents for the "+outputName+" output"
	default:
		o.raw = append([]byte(nil), raws[target]...)
	}
}

func parseOutputTensor(b []byte) (name, datatype string, shape []int64, ok bool) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", "", nil, false
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			name, n = string(v), m
		case num == 2 && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			datatype, n = string(v), m
		case num == 3 && typ == protowire.BytesType: // packed
			v, m := protowire.ConsumeBytes(b)
			for len(v) > 0 {
				d, k := protowire.ConsumeVarint(v)
				if k < 0 {
					return "", "", nil, false
				}
				shape, v = append(shape, int64(d)), v[k:]
			}
			n = m
		case num == 3 && typ == protowire.VarintType:
			d, m := protowire.ConsumeVarint(b)
			shape, n = append(shape, int64(d)), m
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return "", "", nil, false
		}
		b = b[n:]
	}
	return name, datatype, shape, true
}
