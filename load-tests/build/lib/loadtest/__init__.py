"""loadtest: a fair, open-loop-correct side-by-side load tester for KServe v2 servers (OVMS, Triton)."""

__version__ = "0.1.0"
