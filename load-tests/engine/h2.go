package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2/hpack"
)

// h2conn is one HTTP/2 connection (RFC 9113) carrying unary gRPC calls: what the engine needs of a gRPC
// client and nothing else. A call's frames are written by the goroutine that starts it, without waiting for
// the socket (writes are combined: whoever finds a write under way leaves its frames to it; a socket that
// takes less than offered gets a writer goroutine until it has taken the rest), and one reader goroutine
// parses the answers and completes the calls; neither ever waits on the socket for the other. A call
// therefore costs one write and one read on the path of the request, no goroutine hand-off to a writer or
// a per-stream buffer, and a few small allocations; grpc-go spent about half of the engine's CPU per call
// on that machinery (docs/loadtest.md, "Choices and limits").
//
// It speaks only what a unary call over a cleartext connection needs: no server push (refused in SETTINGS),
// no priorities, no compression. Flow control is honoured both ways; it advertises the largest windows, so the
// server never waits on it.
type h2conn struct {
	conn  *rawConn
	addr  string
	block []byte // the request header block, the same for every call (never-indexed literals)

	mu         sync.Mutex
	streams    map[uint32]*call // open streams
	queue      []*call          // calls waiting for a stream slot or for send window, in order
	nextID     uint32
	window     int64 // the connection's send window
	initial    int64 // the server's SETTINGS_INITIAL_WINDOW_SIZE
	maxFrame   int
	maxStreams int
	wbuf       []byte // frames waiting for the socket
	spare      []byte
	writing    bool        // a write is under way (a caller's, or the writer goroutine's)
	err        *outcome    // why the connection ended: what its calls get
	done       atomic.Bool // err != nil || goaway, for usable()
	goaway     bool        // no new streams (refuseNewLocked)
	settled    sync.Once
	ready      chan struct{} // closed at the server's first SETTINGS, or when the connection ends first

	// The reader's own state.
	decoder  *hpack.Decoder
	fields   headerFields
	unacked  int64  // DATA received since the last connection WINDOW_UPDATE
	inBlock  []byte // the header block being read
	inHeader uint32 // the stream whose header block continues, 0 when none
	endBlock bool   // that block ends the stream
}

// call is one unary call: its message, its state on the connection and, once complete, its outcome.
type call struct {
	message []byte // the gRPC message: compressed flag, length, ModelInferRequest
	sent    int    // bytes of message sent
	id      uint32 // 0 until its HEADERS are written
	window  int64  // the stream's send window
	headers bool   // the answer's headers arrived
	status  int    // the answer's :status
	data    []byte // the answer's DATA, gRPC framing included
	result  outcome
	done    chan struct{}
	timer   *time.Timer
}

// finish hands the call its outcome: once per call start, by whoever takes it off the connection.
func (c *call) finish(o outcome) {
	c.result = o
	c.done <- struct{}{}
}

// reset readies a pooled call for (another) start of message.
func (c *call) reset(message []byte) {
	c.message, c.sent, c.id, c.headers, c.status, c.data = message, 0, 0, false, 0, c.data[:0]
}

type headerFields struct {
	status, grpcStatus int // -1 when absent
	grpcMessage        string
}

const (
	frameData         = 0x0
	frameHeaders      = 0x1
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePushPromise  = 0x5
	framePing         = 0x6
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8
	frameContinuation = 0x9

	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20

	settingEnablePush           = 0x2
	settingMaxConcurrentStreams = 0x3
	settingInitialWindowSize    = 0x4
	settingMaxFrameSize         = 0x5

	// kindRetry: a call the server did not process (refused stream, GOAWAY): the sender starts it again on
	// a connection that takes it; never reported.
	kindRetry = "retry"

	frameHeaderLen = 9
	maxWindow      = 1<<31 - 1
	defaultWindow  = 65535
	defaultFrame   = 16384 // SETTINGS_MAX_FRAME_SIZE's default, both ways (this end never raises its own)
	lastStreamID   = 1<<31 - 1
	errCancel      = 0x8
	errRefused     = 0x7
	// writeStall: a socket that takes none of a pending write for this long ends the connection (the server
	// stopped reading); its calls time out.
	writeStall = 10 * time.Second
)

const clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// requestBlock is the HPACK block of every call's headers. Never-indexed literals keep it independent of the
// connection's dynamic table, so it is encoded once and sent as it is.
func requestBlock(authority, path string) []byte {
	var buf bytes.Buffer
	encoder := hpack.NewEncoder(&buf)
	for _, f := range [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":path", path}, {":authority", authority},
		{"content-type", "application/grpc"}, {"te", "trailers"}, {"user-agent", "loadtest-engine"},
	} {
		_ = encoder.WriteField(hpack.HeaderField{Name: f[0], Value: f[1], Sensitive: true})
	}
	return buf.Bytes()
}

// dialH2 connects, sends the preface with this end's settings, and waits for the server's SETTINGS.
func dialH2(addr string, block []byte, timeout time.Duration) (*h2conn, error) {
	c, err := dialRawTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	h := &h2conn{
		conn: c.(*rawConn), addr: addr, block: block, streams: map[uint32]*call{}, nextID: 1,
		window: defaultWindow, initial: defaultWindow, maxFrame: defaultFrame, maxStreams: 1 << 30,
		ready: make(chan struct{}),
	}
	h.decoder = hpack.NewDecoder(4096, h.field)
	h.wbuf = append(h.wbuf, clientPreface...)
	h.wbuf = appendFrame(h.wbuf, frameSettings, 0, 0, 12)
	h.wbuf = appendSetting(h.wbuf, settingEnablePush, 0)
	h.wbuf = appendSetting(h.wbuf, settingInitialWindowSize, maxWindow)
	h.wbuf = appendWindowUpdate(h.wbuf, 0, maxWindow-defaultWindow)
	go h.readLoop()
	h.mu.Lock()
	h.flushLocked()
	select {
	case <-h.ready:
	case <-time.After(timeout):
		h.close()
		return nil, fmt.Errorf("no HTTP/2 settings from %s within %.3g s", addr, timeout.Seconds())
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil {
		return nil, errors.New(h.err.detail)
	}
	return h, nil
}

// usable: the connection takes new calls (read without the lock, on every call).
func (h *h2conn) usable() bool { return !h.done.Load() }

// refuseNewLocked: no new streams on this connection (GOAWAY received, or stream ids used up); the open
// ones finish.
func (h *h2conn) refuseNewLocked() {
	h.goaway = true
	h.done.Store(true)
}

func (h *h2conn) close() {
	h.mu.Lock()
	h.failLocked(outcome{kind: "cancelled", detail: "the connection was closed"})
	h.mu.Unlock()
}

// start sends a call's headers and as much of its message as the windows allow; the rest follows as the
// server opens them. It fails only when the connection takes no new calls.
func (h *h2conn) start(c *call) bool {
	h.mu.Lock()
	if h.err != nil || h.goaway || h.nextID+2*uint32(len(h.queue)) > lastStreamID {
		h.refuseNewLocked()
		h.mu.Unlock()
		return false
	}
	if len(h.queue) > 0 {
		h.queue = append(h.queue, c)
		h.pumpLocked()
	} else if !h.sendLocked(c) {
		h.queue = append(h.queue, c)
	}
	h.flushLocked()
	return true
}

// sendLocked opens the call's stream if it has none and a slot is free, then frames as much of its message as
// the windows allow; true once all of it is framed.
func (h *h2conn) sendLocked(c *call) bool {
	if c.id == 0 {
		if len(h.streams) >= h.maxStreams {
			return false
		}
		if h.goaway || h.nextID > lastStreamID {
			return false
		}
		c.id, c.window = h.nextID, h.initial
		h.nextID += 2
		h.streams[c.id] = c
		h.wbuf = appendFrame(h.wbuf, frameHeaders, flagEndHeaders, c.id, len(h.block))
		h.wbuf = append(h.wbuf, h.block...)
	}
	for c.sent < len(c.message) {
		n := min(len(c.message)-c.sent, h.maxFrame, int(min(h.window, c.window)))
		if n <= 0 {
			return false
		}
		var flags byte
		if c.sent+n == len(c.message) {
			flags = flagEndStream
		}
		h.wbuf = appendFrame(h.wbuf, frameData, flags, c.id, n)
		h.wbuf = append(h.wbuf, c.message[c.sent:c.sent+n]...)
		c.sent += n
		h.window -= int64(n)
		c.window -= int64(n)
	}
	return true
}

// pumpLocked sends what the queue holds, in order, as far as stream slots and windows allow; after a GOAWAY
// the calls that have no stream yet are refused.
func (h *h2conn) pumpLocked() {
	kept := h.queue[:0]
	var refused []*call
	for _, c := range h.queue {
		switch {
		case c.id == 0 && h.goaway:
			refused = append(refused, c)
		case !h.sendLocked(c):
			kept = append(kept, c)
		}
	}
	clear(h.queue[len(kept):])
	h.queue = kept
	for _, c := range refused {
		c.finish(outcome{kind: kindRetry, detail: "the server takes no new streams on this connection"})
	}
}

// releaseLocked unlocks, writing first what the reader's work left to send.
func (h *h2conn) releaseLocked() {
	if len(h.wbuf) > 0 {
		h.flushLocked()
		return
	}
	h.mu.Unlock()
}

// cancel ends a call that ran past its deadline: true when it was still under way (it is the caller's now),
// false when the reader completed it first.
func (h *h2conn) cancel(c *call) bool {
	h.mu.Lock()
	if h.dropLocked(c) {
		if c.id != 0 && h.err == nil {
			h.wbuf = appendRSTStream(h.wbuf, c.id, errCancel)
		}
		h.flushLocked()
		return true
	}
	h.mu.Unlock()
	return false
}

// dropLocked takes a call off the connection: true when it was on it.
func (h *h2conn) dropLocked(c *call) bool {
	found := false
	if c.id != 0 && h.streams[c.id] == c {
		delete(h.streams, c.id)
		found = true
	}
	for i, q := range h.queue {
		if q == c {
			h.queue = append(h.queue[:i], h.queue[i+1:]...)
			found = true
			break
		}
	}
	if found && len(h.queue) > 0 {
		h.pumpLocked() // a stream slot is free
	}
	if found && h.goaway && len(h.streams) == 0 && h.err == nil {
		_ = h.conn.Close() // drained: the reader ends with the connection
	}
	return found
}

func (h *h2conn) completeLocked(c *call, o outcome) {
	if c.id != 0 && c.sent < len(c.message) && h.streams[c.id] == c {
		// Answered before all of the request was sent: this end of the stream closes too.
		h.wbuf = appendRSTStream(h.wbuf, c.id, errCancel)
	}
	if h.dropLocked(c) {
		c.finish(o)
	}
}

// failLocked ends the connection: every call on it gets o.
func (h *h2conn) failLocked(o outcome) {
	if h.err != nil {
		return
	}
	h.err = &o
	h.done.Store(true)
	for _, c := range h.streams {
		c.finish(o)
	}
	for _, c := range h.queue {
		if h.streams[c.id] != c { // not finished above
			c.finish(o)
		}
	}
	clear(h.streams)
	h.queue = nil
	_ = h.conn.Close()
	h.settled.Do(func() { close(h.ready) })
}

// flushLocked writes the pending frames as far as the socket takes them now, unless a write is under way
// (it takes them along), and unlocks. What the socket does not take goes to a writer goroutine.
func (h *h2conn) flushLocked() {
	if h.writing {
		h.mu.Unlock()
		return
	}
	h.writing = true
	for h.err == nil && len(h.wbuf) > 0 {
		out := h.wbuf
		h.wbuf = h.spare[:0]
		h.mu.Unlock()
		n, err := h.conn.tryWrite(out)
		h.mu.Lock()
		if err != nil {
			h.spare = out[:0]
			h.writeFailedLocked(err)
			break
		}
		if n < len(out) { // the rest, then what came meanwhile, in order
			rest := append(out[:0], out[n:]...)
			h.wbuf, h.spare = append(rest, h.wbuf...), h.wbuf[:0]
			go h.drain()
			h.mu.Unlock()
			return
		}
		h.spare = out[:0]
	}
	h.writing = false
	h.mu.Unlock()
}

// drain writes what is pending, waiting for the socket, until nothing is left.
func (h *h2conn) drain() {
	h.mu.Lock()
	for h.err == nil && len(h.wbuf) > 0 {
		out := h.wbuf
		h.wbuf = h.spare[:0]
		h.mu.Unlock()
		_ = h.conn.SetWriteDeadline(time.Now().Add(writeStall))
		_, err := h.conn.Write(out)
		h.mu.Lock()
		h.spare = out[:0]
		if err != nil {
			h.writeFailedLocked(err)
		}
	}
	_ = h.conn.SetWriteDeadline(time.Time{})
	h.writing = false
	h.mu.Unlock()
}

func (h *h2conn) writeFailedLocked(err error) {
	if isTimeout(err) {
		h.failLocked(outcome{kind: kindTimeout, detail: fmt.Sprintf("the server read no request for %.0f s", writeStall.Seconds())})
	} else {
		h.failLocked(outcome{kind: "unavailable", detail: fmt.Sprintf("connection to %s lost: %s", h.addr, reason(err))})
	}
}

func (h *h2conn) control(frame []byte) {
	h.mu.Lock()
	h.wbuf = append(h.wbuf, frame...)
	h.flushLocked()
}

func appendFrame(b []byte, typ, flags byte, stream uint32, length int) []byte {
	return append(b, byte(length>>16), byte(length>>8), byte(length), typ, flags,
		byte(stream>>24), byte(stream>>16), byte(stream>>8), byte(stream))
}

func appendSetting(b []byte, id uint16, value uint32) []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint16(b, id), value)
}

func appendRSTStream(b []byte, stream, code uint32) []byte {
	return binary.BigEndian.AppendUint32(appendFrame(b, frameRSTStream, 0, stream, 4), code)
}

func appendWindowUpdate(b []byte, stream, inc uint32) []byte {
	return binary.BigEndian.AppendUint32(appendFrame(b, frameWindowUpdate, 0, stream, 4), inc)
}
