package main

import (
	"math"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Times are seconds on CLOCK_MONOTONIC, the clock Python's time.monotonic() reads, so the runner can hand
// every engine one start time. now() reads Go's own monotonic clock (the vDSO, no system call) from a base
// taken once against clock_gettime(CLOCK_MONOTONIC).
var (
	baseMono float64
	baseTime time.Time
)

func init() {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	baseTime = time.Now()
	baseMono = float64(ts.Sec) + float64(ts.Nsec)*1e-9
}

func now() float64 { return baseMono + time.Since(baseTime).Seconds() }

// wallDeadline turns a monotonic time into a time.Time for contexts and socket deadlines.
func wallDeadline(t float64) time.Time {
	return time.Now().Add(time.Duration((t - now()) * 1e9))
}

// waiter sleeps until an absolute monotonic time with a timerfd read through Go's netpoller: the runtime's
// own timers round a sleep to whole milliseconds (epoll_wait's timeout), a timerfd fires within microseconds.
type waiter struct {
	fd   int
	file *os.File
	raw  syscall.RawConn
	buf  [8]byte
}

func newWaiter() (*waiter, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	file := os.NewFile(uintptr(fd), "timerfd")
	raw, err := file.SyscallConn()
	if err != nil {
		_ = file.Close()
		return nil, err
	}
	return &waiter{fd: fd, file: file, raw: raw}, nil
}

// until returns at time t (at once when t has passed).
func (w *waiter) until(t float64) {
	if t <= now() {
		return
	}
	sec := math.Floor(t)
	spec := unix.ItimerSpec{Value: unix.Timespec{Sec: int64(sec), Nsec: int64((t - sec) * 1e9)}}
	// Raw system calls (they do not block), as for rawConn: the runtime's syscall bookkeeping would wake its
	// monitor thread at every request.
	_, _, errno := unix.RawSyscall6(unix.SYS_TIMERFD_SETTIME, uintptr(w.fd), unix.TFD_TIMER_ABSTIME,
		uintptr(unsafe.Pointer(&spec)), 0, 0, 0)
	if errno != 0 {
		time.Sleep(time.Duration((t - now()) * 1e9))
		return
	}
	_ = w.raw.Read(func(fd uintptr) bool {
		_, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&w.buf[0])), uintptr(len(w.buf)))
		return e != unix.EAGAIN
	})
}

func (w *waiter) close() { _ = w.file.Close() }

// cpuSeconds is this process's user and system time, all threads.
func cpuSeconds() float64 {
	var usage unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &usage)
	return float64(usage.Utime.Sec+usage.Stime.Sec) + float64(usage.Utime.Usec+usage.Stime.Usec)*1e-6
}
