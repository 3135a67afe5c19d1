"""Benchmark of the gateway against LiteLLM proxy and Portkey gateway (``make bench``).

Every target runs on 127.0.0.1 in front of one provider simulator; the same wrk
workloads and the same streaming client measure them all. See docs/benchmarks.md.
"""
