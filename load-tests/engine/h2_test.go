package main

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

// The minimal client against a real gRPC server (grpc-go's), whose handler answers by the request's first
// byte: 'e' echoes the request as the probabilities' raw contents, 'x' fails with a status, 's' sleeps.

type bytesCodec struct{}

func (bytesCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*(v.(*[]byte)))}, nil
}

func (bytesCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*(v.(*[]byte)) = data.Materialize()
	return nil
}

func (bytesCodec) Name() string { return "proto" }

// sleeping hears from each 's' call as it starts sleeping.
var sleeping = make(chan struct{}, 16)

func handle(_ any, stream grpc.ServerStream) error {
	if method, _ := grpc.MethodFromServerStream(stream); method != grpcInfer {
		return status.Error(codes.Unimplemented, "no method "+method)
	}
	var in []byte
	if err := stream.RecvMsg(&in); err != nil {
		return err
	}
	switch in[0] {
	case 'x':
		return status.Error(codes.ResourceExhausted, "queue full: 100% used, try later")
	case 's':
		select {
		case sleeping <- struct{}{}:
		default:
		}
		time.Sleep(2 * time.Second)
	}
	var out []byte
	out = protowire.AppendTag(out, 5, protowire.BytesType)
	out = protowire.AppendBytes(out, tensor(outputName, "FP32", 1, uint64(len(in))))
	out = protowire.AppendTag(out, 6, protowire.BytesType)
	out = protowire.AppendBytes(out, in)
	return stream.SendMsg(&out)
}

// serve starts a server on a free port; small windows and two streams at a time make the client wait for
// window updates and stream slots.
func serve(t *testing.T, options ...grpc.ServerOption) (*grpc.Server, string) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if len(options) == 0 {
		options = []grpc.ServerOption{grpc.InitialWindowSize(65535), grpc.InitialConnWindowSize(65535), grpc.MaxConcurrentStreams(2)}
	}
	options = append(options, grpc.UnknownServiceHandler(handle), grpc.ForceServerCodecV2(bytesCodec{}))
	server := grpc.NewServer(options...)
	go func() { _ = server.Serve(listener) }()
	t.Cleanup(server.Stop)
	return server, listener.Addr().String()
}

func opened(t *testing.T, addr string, payloads ...[]byte) *grpcSender {
	g := newGrpcSender(addr, payloads)
	if err := g.open(5); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.close)
	return g
}

func TestGrpcCallsHonourFlowControlAndStreamLimits(t *testing.T) {
	_, addr := serve(t)
	// 200 kB: thirteen DATA frames, three times the server's stream window.
	payloads := [][]byte{[]byte("e-small"), append([]byte("e"), bytes.Repeat([]byte("0123456789"), 20000)...)}
	g := opened(t, addr, payloads...)
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for u := 0; u < 8; u++ {
		wg.Add(1)
		go func(u int) {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				index := (u + i) % 2
				o := g.send(index, now()+10)
				if o.kind != "" || !bytes.Equal(o.raw, payloads[index]) || pyTuple(o.shape) != fmt.Sprintf("(1, %d)", len(payloads[index])) {
					errs <- fmt.Sprintf("call %d/%d: %s %s, %d bytes", u, i, o.kind, o.detail, len(o.raw))
					return
				}
			}
		}(u)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestGrpcMessageLargerThanTheSocketTakes(t *testing.T) {
	// Windows as large as the message: what the socket does not take at once goes by the writer goroutine.
	_, addr := serve(t, grpc.InitialWindowSize(1<<30), grpc.InitialConnWindowSize(1<<30), grpc.MaxRecvMsgSize(64<<20))
	payloads := [][]byte{append([]byte("e"), bytes.Repeat([]byte("x"), 24<<20)...), []byte("e")}
	g := opened(t, addr, payloads...)
	results := make([]outcome, len(payloads))
	var wg sync.WaitGroup
	for i := range payloads {
		wg.Add(1)
		go func() { defer wg.Done(); results[i] = g.send(i, now()+20) }()
	}
	wg.Wait()
	for i, o := range results {
		if o.kind != "" || !bytes.Equal(o.raw, payloads[i]) {
			t.Errorf("call %d: %s %s, %d bytes back of %d", i, o.kind, o.detail, len(o.raw), len(payloads[i]))
		}
	}
}

func TestGrpcCallsMoveToANewConnectionAfterGoaway(t *testing.T) {
	// The server ends every connection after 100 ms (GOAWAY): no call fails, they go on a new connection.
	_, addr := serve(t, grpc.KeepaliveParams(keepalive.ServerParameters{
		MaxConnectionAge: 100 * time.Millisecond, MaxConnectionAgeGrace: 5 * time.Second,
	}))
	g := opened(t, addr, []byte("e"))
	first := g.conn
	var wg sync.WaitGroup
	failures := make(chan outcome, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for until := now() + 0.6; now() < until; {
				if o := g.send(0, now()+5); o.kind != "" {
					failures <- o
					return
				}
			}
		}()
	}
	wg.Wait()
	close(failures)
	for o := range failures {
		t.Errorf("a call failed: %s %s", o.kind, o.detail)
	}
	if g.conn == first {
		t.Fatal("still on the first connection")
	}
}

func TestGrpcStatusTimeoutAndTheConnectionAfter(t *testing.T) {
	_, addr := serve(t)
	g := opened(t, addr, []byte("x"), []byte("s"), []byte("e"))
	if o := g.send(0, now()+5); o.kind != "grpc_resource_exhausted" || o.detail != "queue full: 100% used, try later" {
		t.Fatalf("a failed call: %+v", o)
	}
	started := now()
	if o := g.send(1, now()+0.05); o.kind != kindTimeout || o.detail != "no answer within 0.05 s" {
		t.Fatalf("a late answer: %+v", o)
	}
	if took := now() - started; took > 1 { // the answer comes after 2 s
		t.Fatalf("the timeout took %.3f s", took)
	}
	conn := g.conn
	if o := g.send(2, now()-1e-3); o.kind != kindTimeout || o.detail != "its deadline passed before it was sent" {
		t.Fatalf("a call past its deadline: %+v", o)
	}
	if o := g.send(2, now()+5); o.kind != "" || string(o.raw) != "e" || g.conn != conn {
		t.Fatalf("the next call, on the same connection: %+v", o)
	}
}

func TestGrpcServerGoneMidCall(t *testing.T) {
	server, addr := serve(t)
	g := opened(t, addr, []byte("s"), []byte("e"))
	for len(sleeping) > 0 { // another test's
		<-sleeping
	}
	result := make(chan outcome)
	go func() { result <- g.send(0, now()+5) }()
	<-sleeping
	server.Stop()
	if o := <-result; o.kind != "unavailable" || !strings.Contains(o.detail, addr) {
		t.Fatalf("the call under way: %+v", o)
	}
	o := g.send(1, now()+5)
	if o.kind != "unavailable" || o.detail != "cannot connect to "+addr+": connection refused" {
		t.Fatalf("a call after: %+v", o)
	}
	failedAt := g.failedAt
	if o := g.send(1, now()+5); o.kind != "unavailable" || o.detail != "cannot connect to "+addr+": connection refused" || g.failedAt != failedAt {
		t.Fatalf("a call right after fails without dialling: %+v", o)
	}
}

func TestGrpcOpenWaitsForTheServer(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := listener.Addr().String()
	_ = listener.Close()
	err = newGrpcSender(addr, [][]byte{[]byte("e")}).open(0.3)
	if err == nil || err.Error() != "no gRPC connection to "+addr+" within 0 s: connection refused" {
		t.Fatalf("got %v", err)
	}
}
