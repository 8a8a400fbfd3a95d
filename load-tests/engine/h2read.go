package main

// The reader half of h2conn: one goroutine per connection reads the server's frames, keeps the HPACK table
// and the windows, and completes the calls.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"

	"golang.org/x/net/http2/hpack"
)

func (h *h2conn) readLoop() {
	r := bufio.NewReaderSize(h.conn, 64<<10)
	var head [frameHeaderLen]byte
	payload := make([]byte, 0, defaultFrame)
	for {
		_, err := io.ReadFull(r, head[:])
		length := int(head[0])<<16 | int(head[1])<<8 | int(head[2])
		if err == nil && length > defaultFrame {
			err = fmt.Errorf("a frame of %d bytes, above SETTINGS_MAX_FRAME_SIZE", length)
		}
		if err == nil {
			payload = payload[:length]
			_, err = io.ReadFull(r, payload)
		}
		if err == nil {
			err = h.frame(head[3], head[4], binary.BigEndian.Uint32(head[5:])&lastStreamID, payload)
		}
		if err != nil {
			h.mu.Lock()
			h.failLocked(outcome{kind: "unavailable", detail: fmt.Sprintf("connection to %s lost: %s", h.addr, reason(err))})
			h.mu.Unlock()
			return
		}
	}
}

// frame handles one frame from the server.
func (h *h2conn) frame(typ, flags byte, stream uint32, p []byte) error {
	if h.inHeader != 0 && (typ != frameContinuation || stream != h.inHeader) {
		return errors.New("a header block interrupted by another frame")
	}
	switch typ {
	case frameData:
		h.unacked += int64(len(p))
		if h.unacked >= maxWindow/2 {
			h.control(appendWindowUpdate(nil, 0, uint32(h.unacked)))
			h.unacked = 0
		}
		p, err := unpad(flags, p)
		if err != nil {
			return err
		}
		h.mu.Lock()
		if c := h.streams[stream]; c != nil {
			c.data = append(c.data, p...)
			if flags&flagEndStream != 0 {
				h.completeLocked(c, answer(c, headerFields{status: c.status, grpcStatus: -1}))
			}
		}
		h.releaseLocked()
	case frameHeaders:
		p, err := unpad(flags, p)
		if err != nil {
			return err
		}
		if flags&flagPriority != 0 {
			if len(p) < 5 {
				return errors.New("a short HEADERS frame")
			}
			p = p[5:]
		}
		h.inBlock = append(h.inBlock[:0], p...)
		h.inHeader, h.endBlock = stream, flags&flagEndStream != 0
		if flags&flagEndHeaders != 0 {
			return h.headers()
		}
	case frameContinuation:
		h.inBlock = append(h.inBlock, p...)
		if flags&flagEndHeaders != 0 {
			return h.headers()
		}
	case frameRSTStream:
		if len(p) != 4 {
			return errors.New("a RST_STREAM frame of the wrong size")
		}
		code := binary.BigEndian.Uint32(p)
		o := outcome{kind: "grpc_internal", detail: "the server reset the stream: " + h2ErrorName(code)}
		switch code {
		case errRefused: // not processed: the sender tries it again
			o.kind = kindRetry
		case errCancel:
			o.kind = "cancelled"
		}
		h.mu.Lock()
		if c := h.streams[stream]; c != nil {
			c.sent = len(c.message) // the stream is closed: nothing more of it, no RST_STREAM back
			h.completeLocked(c, o)
		}
		h.releaseLocked()
	case frameSettings:
		if flags&flagAck != 0 {
			return nil
		}
		if len(p)%6 != 0 {
			return errors.New("a SETTINGS frame of the wrong size")
		}
		h.mu.Lock()
		for ; len(p) > 0; p = p[6:] {
			value := binary.BigEndian.Uint32(p[2:])
			switch binary.BigEndian.Uint16(p) {
			case settingMaxConcurrentStreams:
				h.maxStreams = int(min(value, 1<<30))
			case settingInitialWindowSize:
				delta := int64(value) - h.initial
				h.initial = int64(value)
				for _, c := range h.streams {
					c.window += delta
				}
			case settingMaxFrameSize:
				h.maxFrame = int(min(value, 1<<24-1))
			}
		}
		h.wbuf = appendFrame(h.wbuf, frameSettings, flagAck, 0, 0)
		h.pumpLocked()
		h.flushLocked()
		h.settled.Do(func() { close(h.ready) })
	case framePing:
		if flags&flagAck == 0 && len(p) == 8 {
			h.control(append(appendFrame(nil, framePing, flagAck, 0, 8), p...))
		}
	case frameGoAway:
		if len(p) < 8 {
			return errors.New("a short GOAWAY frame")
		}
		last := binary.BigEndian.Uint32(p) & lastStreamID
		// Streams above the last one the server processes were not processed: the sender tries them again.
		o := outcome{kind: kindRetry, detail: "the server refused the stream (GOAWAY " +
			h2ErrorName(binary.BigEndian.Uint32(p[4:])) + ")"}
		h.mu.Lock()
		h.refuseNewLocked()
		for id, c := range h.streams {
			if id > last {
				c.sent = len(c.message)
				h.completeLocked(c, o)
			}
		}
		h.pumpLocked()
		if len(h.streams) == 0 {
			_ = h.conn.Close()
		}
		h.releaseLocked()
	case frameWindowUpdate:
		if len(p) != 4 {
			return errors.New("a WINDOW_UPDATE frame of the wrong size")
		}
		inc := int64(binary.BigEndian.Uint32(p) & lastStreamID)
		h.mu.Lock()
		if stream == 0 {
			h.window += inc
		} else if c := h.streams[stream]; c != nil {
			c.window += inc
		}
		h.pumpLocked()
		h.flushLocked()
	case framePushPromise:
		return errors.New("a PUSH_PROMISE, though push is disabled")
	}
	return nil
}

// headers decodes a complete header block (always: the HPACK table depends on every block) and applies it
// to its stream: the answer's headers, its trailers, or both at once (a trailers-only answer).
func (h *h2conn) headers() error {
	stream, end := h.inHeader, h.endBlock
	h.inHeader = 0
	h.fields = headerFields{status: -1, grpcStatus: -1}
	if _, err := h.decoder.Write(h.inBlock); err != nil {
		return fmt.Errorf("an undecodable header block: %w", err)
	}
	if err := h.decoder.Close(); err != nil { // the block ends here: nothing of it carries into the next
		return fmt.Errorf("a truncated header block: %w", err)
	}
	h.mu.Lock()
	if c := h.streams[stream]; c != nil {
		if !c.headers {
			c.headers, c.status = true, h.fields.status
		}
		if end {
			h.completeLocked(c, answer(c, h.fields))
		}
	}
	h.releaseLocked()
	return nil
}

func (h *h2conn) field(f hpack.HeaderField) {
	switch f.Name {
	case ":status":
		h.fields.status, _ = strconv.Atoi(f.Value)
	case "grpc-status":
		if code, err := strconv.Atoi(f.Value); err == nil {
			h.fields.grpcStatus = code
		}
	case "grpc-message":
		h.fields.grpcMessage = f.Value
		if text, err := url.PathUnescape(f.Value); err == nil {
			h.fields.grpcMessage = text
		}
	}
}

// answer is a complete call's outcome: an HTTP status other than 200 as gRPC maps it, a gRPC status other
// than OK by its name, or the one message of the answer parsed.
func answer(c *call, f headerFields) outcome {
	if c.status != 200 {
		return outcome{kind: httpStatusKind(c.status), detail: fmt.Sprintf("HTTP status %d from a gRPC server", c.status)}
	}
	if f.grpcStatus < 0 {
		return outcome{kind: "grpc_internal", detail: "the server ended the stream without a grpc-status"}
	}
	if f.grpcStatus != 0 {
		o := outcome{kind: grpcKind(grpcCode(f.grpcStatus)), detail: f.grpcMessage}
		if o.detail == "" {
			o.detail = grpcName(grpcCode(f.grpcStatus))
		}
		return o
	}
	d := c.data
	if len(d) < 5 || d[0] != 0 || int(binary.BigEndian.Uint32(d[1:])) != len(d)-5 {
		what := "not one uncompressed message"
		if len(d) >= 5 && d[0] != 0 {
			what = "a compressed message"
		}
		return outcome{kind: "bad_response", detail: "the answer is " + what}
	}
	var o outcome
	parseInferResponse(d[5:], &o)
	return o
}

// httpStatusKind maps an HTTP status to a gRPC code, as gRPC's http-grpc-status-mapping.md does.
func httpStatusKind(status int) string {
	switch status {
	case 400:
		return "grpc_internal"
	case 401:
		return "grpc_unauthenticated"
	case 403:
		return "grpc_permission_denied"
	case 404:
		return "grpc_unimplemented"
	case 429, 502, 503, 504:
		return "unavailable"
	}
	return "grpc_unknown"
}

func unpad(flags byte, p []byte) ([]byte, error) {
	if flags&flagPadded == 0 {
		return p, nil
	}
	if len(p) == 0 || int(p[0]) >= len(p) {
		return nil, errors.New("a frame padded beyond its length")
	}
	return p[1 : len(p)-int(p[0])], nil
}

func h2ErrorName(code uint32) string {
	names := []string{"NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT",
		"STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR", "CONNECT_ERROR",
		"ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED"}
	if int(code) < len(names) {
		return names[code]
	}
	return "error " + strconv.FormatUint(uint64(code), 10)
}
