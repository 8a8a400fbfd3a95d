module emotion-serving/loadtest-engine

go 1.26.0

require (
	github.com/HdrHistogram/hdrhistogram-go v1.1.2
	golang.org/x/net v0.53.0
	golang.org/x/sys v0.50.0
	google.golang.org/grpc v1.82.1
	google.golang.org/protobuf v1.36.12
)

require (
	golang.org/x/text v0.36.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260414002931-afd174a4e478 // indirect
)
