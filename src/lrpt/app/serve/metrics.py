"""Prometheus metrics of ``lrpt serve`` (``GET /metrics``, text exposition format).

Requests by endpoint and status, request latency histograms, the queue's depth, rows being
decoded, batch sizes by kind (classify, prefill, decode step), generated tokens, and the prefix
cache's hits, misses, evictions, entries and bytes (read from the cache when scraped).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from lrpt.prefix_cache import PrefixCache

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class _CacheCollector(Collector):
    def __init__(self, cache: PrefixCache, prompts: Any) -> None:
        self.cache = cache
        self.prompts = prompts

    def collect(self) -> Iterator[Any]:
        c = self.cache
        yield CounterMetricFamily("lrpt_prefix_cache_hits", "prefix-cache hits", value=c.hits)
        yield CounterMetricFamily("lrpt_prefix_cache_misses", "prefixes computed (misses)",
                                  value=c.misses)  # fmt: skip
        yield CounterMetricFamily("lrpt_prefix_cache_evictions", "prefixes evicted (LRU)",
                                  value=c.evictions)  # fmt: skip
        yield GaugeMetricFamily("lrpt_prefix_cache_entries", "prefixes cached", value=len(c))
        yield GaugeMetricFamily(
            "lrpt_prefix_cache_bytes", "bytes of cached prefixes", value=c.bytes
        )
        yield GaugeMetricFamily("lrpt_prefix_cache_max_bytes", "the cache's cap in bytes",
                                value=c.max_bytes)  # fmt: skip
        yield GaugeMetricFamily("lrpt_prompts", "prompts registered", value=len(self.prompts()))


class ServeMetrics:
    """The server's metrics in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("lrpt_requests", "HTTP requests by endpoint and status",
                                ["endpoint", "status"], registry=r)  # fmt: skip
        self.latency = Histogram("lrpt_request_latency_seconds", "request latency by endpoint",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.queue_depth = Gauge("lrpt_queue_depth", "requests waiting for the model", registry=r)
        self.decoding = Gauge("lrpt_decoding_rows", "generation requests being decoded",
                              registry=r)  # fmt: skip
        self.batch_size = Histogram("lrpt_batch_size", "rows per model call by kind", ["kind"],
                                    buckets=BATCH_BUCKETS, registry=r)  # fmt: skip
        self.tokens = Counter("lrpt_generated_tokens", "tokens generated", registry=r)

    def watch(self, cache: PrefixCache, prompts: Any) -> None:
        """Report ``cache`` and the number of ``prompts()`` when scraped."""
        self.registry.register(_CacheCollector(cache, prompts))

    def batch(self, kind: str, size: int) -> None:
        self.batch_size.labels(kind).observe(size)

    def text(self) -> bytes:
        return generate_latest(self.registry)
