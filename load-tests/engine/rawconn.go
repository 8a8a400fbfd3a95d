package main

import (
	"context"
	"io"
	"net"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawConn is a TCP connection whose reads and writes are raw system calls on its non-blocking socket, with
// Go's netpoller waiting for readiness. A plain net.Conn enters every read and write through the runtime's
// syscall bookkeeping, which wakes the runtime's monitor thread whenever the process was idle: at a fixed
// rate, between requests, that is several wake-ups and sleeps of a second thread per request.
type rawConn struct {
	*net.TCPConn
	raw syscall.RawConn
}

func dialRaw(ctx context.Context, address string) (net.Conn, error) {
	var dialer net.Dialer
	c, err := dialer.DialContext(ctx, "tcp", address)
	if err != nil {
		return nil, err
	}
	tcp := c.(*net.TCPConn)
	raw, err := tcp.SyscallConn()
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	return &rawConn{TCPConn: tcp, raw: raw}, nil
}

func dialRawTimeout(address string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return dialRaw(ctx, address)
}

func (c *rawConn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	var n int
	var errno syscall.Errno
	err := c.raw.Read(func(fd uintptr) bool {
		r, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		n, errno = int(r), e
		return errno != unix.EAGAIN
	})
	if err != nil {
		return 0, wrapErr("read", err)
	}
	if errno != 0 {
		return 0, wrapErr("read", os.NewSyscallError("read", errno))
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

func (c *rawConn) Write(b []byte) (int, error) {
	written := 0
	for written < len(b) {
		n, err := c.write(b[written:], true)
		if err != nil {
			return written, err
		}
		written += n
	}
	return written, nil
}

// tryWrite writes what the socket takes now, without waiting: 0 and no error when it takes nothing.
func (c *rawConn) tryWrite(b []byte) (int, error) { return c.write(b, false) }

// write is one write(2); with wait, a full socket is waited for (the netpoller, the write deadline).
func (c *rawConn) write(b []byte, wait bool) (int, error) {
	var n int
	var errno syscall.Errno
	err := c.raw.Write(func(fd uintptr) bool {
		r, _, e := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		n, errno = int(r), e
		return !wait || errno != unix.EAGAIN
	})
	switch {
	case err != nil:
		return 0, wrapErr("write", err)
	case errno == unix.EAGAIN:
		return 0, nil
	case errno != 0:
		return 0, wrapErr("write", os.NewSyscallError("write", errno))
	}
	return n, nil
}

func wrapErr(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Err: err}
}
