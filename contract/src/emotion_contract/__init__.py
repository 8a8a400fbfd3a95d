"""emotion_contract: what the packager, the load tester and devstack agree on (docs/contracts.md).

layout (every bucket key), documents (READY and manifests, one parser each), s3 (the client), servers (one
description per inference server), errors (one exit-code space), logs and cli (one log set-up, one error
boundary). It depends on minio alone, so `pip install ./load-tests` pulls no PyTorch or OpenVINO.
"""
