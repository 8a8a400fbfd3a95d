package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

// The KServe v2 method; requests are ModelInferRequest messages serialized by the Python side once, answers
// are read with a few lines of protobuf wire parsing (only the `probabilities` output is wanted).
const (
	grpcInfer  = "/inference.GRPCInferenceService/ModelInfer"
	maxMessage = 64 << 20
	outputName = "probabilities"
)

type grpcSender struct {
	url      string
	conn     *grpc.ClientConn
	payloads [][]byte
}

// rawCodec sends ready bytes and parses the answer straight into an outcome. Its name keeps the standard
// content type, application/grpc+proto.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*(v.(*[]byte)))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	o := v.(*outcome)
	if len(data) == 1 {
		parseInferResponse(data[0].ReadOnlyData(), o)
	} else {
		parseInferResponse(data.Materialize(), o)
	}
	return nil
}

func (rawCodec) Name() string { return "proto" }

func newGrpcSender(url string, payloads [][]byte) *grpcSender {
	return &grpcSender{url: url, payloads: payloads}
}

func (g *grpcSender) open(timeout float64) error {
	conn, err := grpc.NewClient("passthrough:///"+g.url,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(dialRaw),
		// Fixed large windows: no BDP estimation, whose pings would add writes to the answers.
		grpc.WithInitialWindowSize(maxMessage), grpc.WithInitialConnWindowSize(maxMessage),
		// No retries (nothing is retried, so no request is kept for a replay), no service config lookup.
		grpc.WithDisableRetry(), grpc.WithDisableServiceConfig(), grpc.WithSharedWriteBuffer(true),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{}),
			grpc.MaxCallRecvMsgSize(maxMessage), grpc.MaxCallSendMsgSize(maxMessage)))
	if err != nil {
		return err
	}
	g.conn = conn
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(timeout*1e9))
	defer cancel()
	conn.Connect()
	for {
		state := conn.GetState()
		if state == connectivity.Ready {
			return nil
		}
		if !conn.WaitForStateChange(ctx, state) {
			return fmt.Errorf("no gRPC connection to %s within %.0f s", g.url, timeout)
		}
	}
}

func (g *grpcSender) send(index int, deadline float64) outcome {
	var o outcome
	ctx, cancel := context.WithDeadline(context.Background(), wallDeadline(deadline))
	err := g.conn.Invoke(ctx, grpcInfer, &g.payloads[index], &o)
	cancel()
	if err != nil {
		s := status.Convert(err)
		o = outcome{kind: grpcKind(s.Code()), detail: s.Message()}
		if o.detail == "" {
			o.detail = grpcName(s.Code())
		}
	}
	return o
}

func (g *grpcSender) close() {
	if g.conn != nil {
		_ = g.conn.Close()
	}
}

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
