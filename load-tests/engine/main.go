// loadtest-engine: the load tester's hot path (docs/loadtest.md, "How it measures").
//
// The Python side (load-tests/src/loadtest/engine.py, pool.py) starts one engine per worker and drives it
// with one JSON object a line on stdin; each command gets one JSON line back on stdout:
//
//	{"cmd": "setup", "key", "protocol": "grpc"|"http", "url", "requests": FILE, "connect_timeout"}
//	    -> {"ok": true} or {"error": "..."}
//	{"cmd": "level", ...the worker's share of a level...} -> the level's histograms and counters
//	{"cmd": "close"} (or end of input) -> exit
//
// FILE holds the prebuilt requests (engine.py writes it): "LTE1", a uint32 count, then per request its
// payload (a serialized ModelInferRequest, or a whole HTTP request), the expected output's shape and the
// reference's bytes, each length-prefixed, little-endian.
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const stallVariable = "LOADTEST_TEST_STALL"

type target struct {
	sender sender
	expect []expectation
}

type command struct {
	Cmd            string  `json:"cmd"`
	Key            string  `json:"key"`
	Protocol       string  `json:"protocol"`
	URL            string  `json:"url"`
	Requests       string  `json:"requests"`
	ConnectTimeout float64 `json:"connect_timeout"`
	levelSpec
}

func main() {
	// Ctrl-C and SIGTERM reach the whole process group: the runner handles them and closes the engines.
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM)
	_ = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0, 0, 0)
	if os.Getppid() == 1 {
		os.Exit(1)
	}
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1) // one engine a worker, one core each (the runner starts one worker per core)
	}
	debug.SetGCPercent(400)
	hook, err := stallFromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest-engine:", err)
		os.Exit(1)
	}
	targets := map[string]*target{}
	in := bufio.NewReaderSize(os.Stdin, 1<<16)
	out := bufio.NewWriter(os.Stdout)
	encoder := json.NewEncoder(out)
	defer func() {
		for _, t := range targets {
			t.sender.close()
		}
	}()
	for {
		line, err := in.ReadBytes('\n')
		if err != nil {
			return
		}
		var c command
		if err := json.Unmarshal(line, &c); err != nil {
			fmt.Fprintln(os.Stderr, "loadtest-engine: bad command:", err)
			os.Exit(1)
		}
		var answer any
		switch c.Cmd {
		case "close":
			return
		case "setup":
			answer = setup(targets, &c)
		case "level":
			t := targets[c.Key]
			if t == nil {
				fmt.Fprintln(os.Stderr, "loadtest-engine: level for a target never set up:", c.Key)
				os.Exit(1)
			}
			answer = runLevel(&c.levelSpec, t, hook)
			runtime.GC()
		default:
			fmt.Fprintln(os.Stderr, "loadtest-engine: unknown command", c.Cmd)
			os.Exit(1)
		}
		if err := encoder.Encode(answer); err != nil {
			os.Exit(1)
		}
		if err := out.Flush(); err != nil {
			os.Exit(1)
		}
	}
}

func setup(targets map[string]*target, c *command) map[string]any {
	if old := targets[c.Key]; old != nil {
		old.sender.close()
		delete(targets, c.Key)
	}
	payloads, expect, err := readRequests(c.Requests)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest-engine:", err)
		os.Exit(1)
	}
	t := &target{expect: expect}
	if c.Protocol == "grpc" {
		t.sender = newGrpcSender(c.URL, payloads)
	} else {
		t.sender = newHTTPSender(c.URL, payloads)
	}
	targets[c.Key] = t
	if err := t.sender.open(c.ConnectTimeout); err != nil {
		return map[string]any{"error": err.Error()}
	}
	return map[string]any{"ok": true}
}

func readRequests(path string) ([][]byte, []expectation, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	bad := fmt.Errorf("%s: not a request file", path)
	if len(data) < 8 || string(data[:4]) != "LTE1" {
		return nil, nil, bad
	}
	pos := 4
	u32 := func() (uint32, error) {
		if pos+4 > len(data) {
			return 0, io.ErrUnexpectedEOF
		}
		v := binary.LittleEndian.Uint32(data[pos:])
		pos += 4
		return v, nil
	}
	chunk := func() ([]byte, error) {
		n, err := u32()
		if err != nil || pos+int(n) > len(data) {
			return nil, io.ErrUnexpectedEOF
		}
		b := data[pos : pos+int(n)]
		pos += int(n)
		return b, nil
	}
	count, err := u32()
	if err != nil || count == 0 {
		return nil, nil, bad
	}
	payloads := make([][]byte, count)
	expect := make([]expectation, count)
	for i := range payloads {
		if payloads[i], err = chunk(); err != nil {
			return nil, nil, bad
		}
		ndim, err := u32()
		if err != nil || pos+8*int(ndim) > len(data) {
			return nil, nil, bad
		}
		dims := make([]int64, ndim)
		for d := range dims {
			dims[d] = int64(binary.LittleEndian.Uint64(data[pos:]))
			pos += 8
		}
		reference, err := chunk()
		if err != nil {
			return nil, nil, bad
		}
		expect[i] = expectation{dims: dims, bytes: reference}
	}
	return payloads, expect, nil
}

// stallFromEnv reads the test hook; a malformed value stops the engine (exit 1), as docs/loadtest.md says.
func stallFromEnv() (*stallHook, error) {
	value, set := os.LookupEnv(stallVariable)
	if !set {
		return nil, nil
	}
	match := regexp.MustCompile(`^([1-9][0-9]*):([1-9][0-9]*)$`).FindStringSubmatch(value)
	if match == nil {
		return nil, errors.New(stallVariable + "=" + strconv.Quote(value) + ": expected MS:EVERY, two whole numbers above 0")
	}
	ms, _ := strconv.Atoi(match[1])
	every, _ := strconv.Atoi(match[2])
	return &stallHook{pause: time.Duration(ms) * time.Millisecond, every: every}, nil
}
