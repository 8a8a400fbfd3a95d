package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// httpSender speaks KServe v2 REST with the binary tensor extension over keep-alive HTTP/1.1: one request per
// connection at a time, idle connections reused, one retry when a reused idle connection turns out closed.
// The request bytes (head and body) come ready from the Python side.
type httpSender struct {
	addr     string
	requests [][]byte
	mu       sync.Mutex
	idle     []*httpConn
}

type httpConn struct {
	conn   net.Conn
	reader *bufio.Reader
}

func newHTTPSender(url string, requests [][]byte) *httpSender {
	return &httpSender{addr: url, requests: requests}
}

func (h *httpSender) open(timeout float64) error {
	c, err := dialRawTimeout(h.addr, time.Duration(timeout*1e9))
	if err != nil {
		return fmt.Errorf("cannot connect to %s: %s", h.addr, reason(err))
	}
	h.put(&httpConn{conn: c, reader: bufio.NewReaderSize(c, 16<<10)})
	return nil
}

func (h *httpSender) take() *httpConn {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n := len(h.idle); n > 0 {
		c := h.idle[n-1]
		h.idle = h.idle[:n-1]
		return c
	}
	return nil
}

func (h *httpSender) put(c *httpConn) {
	h.mu.Lock()
	h.idle = append(h.idle, c)
	h.mu.Unlock()
}

func (h *httpSender) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.idle {
		_ = c.conn.Close()
	}
	h.idle = nil
}

type httpReply struct {
	status       int
	headerLength int // Inference-Header-Content-Length, -1 when absent
	body         []byte
	keepAlive    bool
}

func (h *httpSender) send(index int, deadline float64) outcome {
	budget := deadline - now()
	var reply httpReply
	for attempt := 0; ; attempt++ {
		c := h.take()
		reused := c != nil
		if c == nil {
			// A server that accepts no connection must not hold a request past its deadline.
			left := deadline - now()
			conn, err := dialRawTimeout(h.addr, time.Duration(math.Max(left, 0)*1e9))
			if err != nil {
				if isTimeout(err) || left <= 0 {
					return outcome{kind: kindTimeout, detail: fmt.Sprintf("no connection within %.3g s", budget)}
				}
				return outcome{kind: "unavailable", detail: fmt.Sprintf("cannot connect to %s: %s", h.addr, reason(err))}
			}
			c = &httpConn{conn: conn, reader: bufio.NewReaderSize(conn, 16<<10)}
		}
		_ = c.conn.SetDeadline(wallDeadline(deadline))
		_, err := c.conn.Write(h.requests[index])
		received := false
		if err == nil {
			_, err = c.reader.Peek(1)
			received = err == nil
			if err == nil {
				reply, err = readReply(c.reader)
			}
		}
		if err != nil {
			_ = c.conn.Close()
			if isTimeout(err) {
				return outcome{kind: kindTimeout, detail: fmt.Sprintf("no answer within %.3g s", budget)}
			}
			if reused && !received && attempt == 0 {
				continue // an idle connection the server had just closed: once more on a new one
			}
			var malformed *malformedError
			if errors.As(err, &malformed) {
				return outcome{kind: "bad_response", detail: "malformed HTTP response: " + malformed.what}
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return outcome{kind: "unavailable", detail: "the server closed the connection"}
			}
			return outcome{kind: "unavailable", detail: "connection lost: " + reason(err)}
		}
		if reply.keepAlive {
			h.put(c)
		} else {
			_ = c.conn.Close()
		}
		break
	}
	if reply.status != 200 {
		return outcome{kind: fmt.Sprintf("http_%d", reply.status), detail: string(clipBytes(reply.body, 200))}
	}
	return parseInferBody(reply.body, reply.headerLength)
}

type malformedError struct{ what string }

func (m *malformedError) Error() string { return m.what }

func readReply(r *bufio.Reader) (httpReply, error) {
	reply := httpReply{headerLength: -1}
	line, err := r.ReadSlice('\n')
	if err != nil {
		return reply, err
	}
	version, rest, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(" "))
	if len(rest) < 3 {
		return reply, &malformedError{"status line " + strconv.Quote(string(line))}
	}
	if reply.status, err = strconv.Atoi(string(rest[:3])); err != nil {
		return reply, &malformedError{"status line " + strconv.Quote(string(line))}
	}
	length, chunked := 0, false
	connection := ""
	for {
		line, err = r.ReadSlice('\n')
		if err != nil {
			return reply, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimSpace(value)
		switch {
		case asciiEqualFold(name, "content-length"):
			if length, err = strconv.Atoi(string(value)); err != nil {
				return reply, &malformedError{"Content-Length " + string(value)}
			}
		case asciiEqualFold(name, "transfer-encoding"):
			chunked = bytes.Contains(bytes.ToLower(value), []byte("chunked"))
		case asciiEqualFold(name, "connection"):
			connection = string(bytes.ToLower(value))
		case asciiEqualFold(name, "inference-header-content-length"):
			if reply.headerLength, err = strconv.Atoi(string(value)); err != nil {
				return reply, &malformedError{"Inference-Header-Content-Length " + string(value)}
			}
		}
	}
	reply.keepAlive = connection != "close" && (string(version) != "HTTP/1.0" || connection == "keep-alive")
	if chunked {
		reply.body, err = readChunked(r)
		return reply, err
	}
	reply.body = make([]byte, length)
	_, err = io.ReadFull(r, reply.body)
	return reply, err
}

func readChunked(r *bufio.Reader) ([]byte, error) {
	var body []byte
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		sizeText, _, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(";"))
		size, err := strconv.ParseInt(string(bytes.TrimSpace(sizeText)), 16, 64)
		if err != nil {
			return nil, &malformedError{"chunk size " + strconv.Quote(string(line))}
		}
		if size == 0 {
			for { // trailers, then the empty line
				line, err = r.ReadSlice('\n')
				if err != nil {
					return nil, err
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					return body, nil
				}
			}
		}
		start := len(body)
		body = append(body, make([]byte, size+2)...)
		if _, err = io.ReadFull(r, body[start:]); err != nil {
			return nil, err
		}
		body = body[:start+int(size)]
	}
}

type inferHeader struct {
	Outputs []struct {
		Name       string    `json:"name"`
		Datatype   string    `json:"datatype"`
		Shape      []int64   `json:"shape"`
		Data       []float64 `json:"data"`
		Parameters struct {
			BinaryDataSize *int `json:"binary_data_size"`
		} `json:"parameters"`
	} `json:"outputs"`
}

// parseInferBody reads the JSON header and the binary outputs that follow it (in the order of the outputs).
func parseInferBody(body []byte, headerLength int) outcome {
	head, tail := body, []byte(nil)
	if headerLength >= 0 {
		if headerLength > len(body) {
			return outcome{kind: "bad_response", detail: "Inference-Header-Content-Length beyond the body"}
		}
		head, tail = body[:headerLength], body[headerLength:]
	}
	var header inferHeader
	if err := json.Unmarshal(head, &header); err != nil {
		return outcome{kind: "bad_response", detail: clip("bad JSON header: "+err.Error(), 200)}
	}
	offset := 0
	for _, out := range header.Outputs {
		size := 0
		if out.Parameters.BinaryDataSize != nil {
			size = *out.Parameters.BinaryDataSize
		}
		if out.Name == outputName {
			o := outcome{datatype: out.Datatype, shape: out.Shape}
			if o.shape == nil {
				o.shape = []int64{}
			}
			switch {
			case out.Parameters.BinaryDataSize != nil:
				if offset+size > len(tail) {
					return outcome{kind: "bad_response", detail: "binary output beyond the body"}
				}
				o.raw = append([]byte(nil), tail[offset:offset+size]...)
			case out.Datatype == "FP32":
				o.raw = make([]byte, 4*len(out.Data))
				for i, v := range out.Data {
					binary.LittleEndian.PutUint32(o.raw[4*i:], math.Float32bits(float32(v)))
				}
			case out.Datatype == "FP64":
				o.raw = make([]byte, 8*len(out.Data))
				for i, v := range out.Data {
					binary.LittleEndian.PutUint64(o.raw[8*i:], math.Float64bits(v))
				}
			}
			return o
		}
		offset += size
	}
	return outcome{kind: "bad_response", detail: "no " + outputName + " output in the answer"}
}

func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func clipBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// reason is an error's system message alone (connection refused), as Python's strerror gives it.
func reason(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return err.Error()
}
