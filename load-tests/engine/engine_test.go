package main

import (
	"bufio"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"
)

func tensor(name, datatype string, shape ...uint64) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, name)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, datatype)
	var packed []byte
	for _, d := range shape {
		packed = protowire.AppendVarint(packed, d)
	}
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	return protowire.AppendBytes(b, packed)
}

func TestParseInferResponseTakesTheProbabilitiesOutput(t *testing.T) {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, "emotion")
	for _, out := range [][]byte{tensor("logits", "FP32", 1, 2), tensor("probabilities", "FP32", 1, 2)} {
		b = protowire.AppendTag(b, 5, protowire.BytesType)
		b = protowire.AppendBytes(b, out)
	}
	for _, raw := range []string{"LLLLLLLL", "PPPPPPPP"} {
		b = protowire.AppendTag(b, 6, protowire.BytesType)
		b = protowire.AppendBytes(b, []byte(raw))
	}
	var o outcome
	parseInferResponse(b, &o)
	if o.kind != "" || o.datatype != "FP32" || pyTuple(o.shape) != "(1, 2)" || string(o.raw) != "PPPPPPPP" {
		t.Fatalf("got %+v", o)
	}
	var missing outcome
	parseInferResponse(b[:9], &missing) // the model name alone
	if missing.kind != "bad_response" || missing.detail != "no probabilities output in the answer" {
		t.Fatalf("got %+v", missing)
	}
}

func TestReadReplyChunkedAndKeepAlive(t *testing.T) {
	text := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nInference-Header-Content-Length: 2\r\n\r\n" +
		"3\r\n{}a\r\n2;x=y\r\nbc\r\n0\r\n\r\n" +
		"HTTP/1.0 400 Bad Request\r\nContent-Length: 4\r\n\r\noops"
	r := bufio.NewReader(strings.NewReader(text))
	reply, err := readReply(r)
	if err != nil || reply.status != 200 || string(reply.body) != "{}abc" || reply.headerLength != 2 || !reply.keepAlive {
		t.Fatalf("got %+v, %v", reply, err)
	}
	reply, err = readReply(r)
	if err != nil || reply.status != 400 || string(reply.body) != "oops" || reply.keepAlive {
		t.Fatalf("got %+v, %v", reply, err)
	}
}

func TestParseInferBodyReadsTheBinaryOutputAfterOthers(t *testing.T) {
	header := `{"outputs":[{"name":"logits","datatype":"FP32","shape":[1,1],"parameters":{"binary_data_size":4}},` +
		`{"name":"probabilities","datatype":"FP32","shape":[1,1],"parameters":{"binary_data_size":4}}]}`
	o := parseInferBody([]byte(header+"LLLLPPPP"), len(header))
	if o.kind != "" || string(o.raw) != "PPPP" || pyTuple(o.shape) != "(1, 1)" {
		t.Fatalf("got %+v", o)
	}
}

func TestNamesAsTheReportWritesThem(t *testing.T) {
	for code, want := range map[codes.Code]string{
		codes.ResourceExhausted: "grpc_resource_exhausted", codes.Unavailable: "unavailable",
		codes.DeadlineExceeded: "timeout", codes.Canceled: "cancelled", codes.InvalidArgument: "grpc_invalid_argument",
	} {
		if got := grpcKind(code); got != want {
			t.Errorf("%v: %s, want %s", code, got, want)
		}
	}
	if pyTuple([]int64{6}) != "(6,)" || pyTuple(nil) != "()" {
		t.Error(pyTuple([]int64{6}), pyTuple(nil))
	}
}

func TestRecorderCountsTimeoutsInTheLatencies(t *testing.T) {
	spec := &levelSpec{StartAt: 100, Warmup: 1, Duration: 10, Interval: 1, Timeout: 2, AbortAfter: 2}
	r := newRecorder(spec, []expectation{{dims: []int64{1, 1}, bytes: []byte("PPPP")}})
	ok := outcome{datatype: "FP32", shape: []int64{1, 1}, raw: []byte("PPPP")}
	other := outcome{datatype: "FP32", shape: []int64{1, 1}, raw: []byte("QQQQ")}
	late := outcome{kind: kindTimeout, detail: "no answer within 2 s"}
	wrong := outcome{datatype: "FP32", shape: []int64{1, 2}, raw: []byte("PPPPPPPP")}
	r.record(0, &ok, 101.5, 101.5, 101.501)
	r.record(0, &other, 102.5, 102.5, 102.501)
	r.record(0, &late, 103.5, 103.5, 105.5)
	r.record(0, &wrong, 104.5, 104.5, 104.501)
	r.record(0, &ok, 100.5, 100.5, 100.501) // warmup: not counted
	if r.ok != 2 || r.exact != 1 || len(r.distinct) != 1 || r.errors["timeout"] != 1 || r.errors["bad_response"] != 1 {
		t.Fatalf("ok %d exact %d distinct %v errors %v", r.ok, r.exact, r.distinct, r.errors)
	}
	if r.latency.TotalCount() != 3 || r.latency.Max() < 2_000_000 || r.service.TotalCount() != 2 {
		t.Fatalf("latency %d max %d service %d", r.latency.TotalCount(), r.latency.Max(), r.service.TotalCount())
	}
	if r.examples["bad_response"] != "(1, 2) probabilities, expected (1, 1)" {
		t.Fatal(r.examples)
	}
}
