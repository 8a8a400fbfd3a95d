"""Real servers on loopback: the S3 gateway, Triton and Prometheus.

Used by the pytest fixtures and by the Makefile's demo alike, so the tests and the demo start the
servers the same way. Every process is started in its own session, dies with its parent
(PR_SET_PDEATHSIG) and is stopped by the context managers, so nothing outlives a test run.
"""

from devstack.errors import StackError
from devstack.prometheus import Prometheus
from devstack.s3 import S3Server
from devstack.triton import TritonServer

__all__ = ["Prometheus", "S3Server", "StackError", "TritonServer"]
