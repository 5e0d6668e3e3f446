"""Metrics: what the side port's ``GET /metrics`` shows, in Prometheus text format.

Counters are fed by the records events (:func:`linkserver.records.add_sink`),
so every figure has a log line behind it and the broker needs no hooks of its
own; figures that are a state rather than a count (links open, queue length,
kernels by state, bytes) are read from the service when a scrape asks. Each
:class:`Metrics` has a registry of its own, so two services in one process
(tests) do not mix their figures.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from . import records

if TYPE_CHECKING:
    from .service import KernelService

__all__ = ["CONTENT_TYPE", "Metrics"]

#: The content type of the text exposition format, version 0.0.4.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Latency buckets, seconds: a kernel answers 1+1 in a millisecond, a real job in minutes.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
           30.0, 60.0, 300.0)
_MAX_WORKERS = 10_000  # worker -> pool entries remembered; cleared past it
_HEADS = 64  # request heads named at most; the rest count as "other" (bounded label set)


def _cause(name: str, reason: str) -> str:
    """A handshake refusal's cause as a short, bounded label."""
    if name == "auth-failed":
        return "key"
    text = reason.lower()
    if "too many links" in text:
        return "max_links"
    if "time" in text:
        return "timeout"
    return "protocol"


class _State:
    """Figures read from the service at scrape time."""

    def __init__(self, service: KernelService) -> None:
        self._service = service

    def collect(self) -> Iterator[Metric]:
        service = self._service
        links = GaugeMetricFamily("linkserver_links_open", "Client links open now.")
        links.add_metric([], service.links_open)
        yield links
        bytes_in, bytes_out = service.traffic()
        received = CounterMetricFamily("linkserver_received_bytes",
                                       "Bytes client links sent to the server.")
        received.add_metric([], bytes_in)
        yield received
        sent = CounterMetricFamily("linkserver_sent_bytes",
                                   "Bytes the server sent to client links.")
        sent.add_metric([], bytes_out)
        yield sent
        queue = GaugeMetricFamily(
            "linkserver_queue_length",
            "Requests waiting for a shared kernel, or links waiting for a pool kernel.",
            labels=["pool"])
        kernels = GaugeMetricFamily("linkserver_kernels", "Kernels by pool and state.",
                                    labels=["pool", "state"])
        for name, pool in service.pools.items():
            stats = pool.broker.statistics()
            if pool.config.mode == "shared":
                queue.add_metric([name], getattr(stats, "queued", 0))
                state = "busy" if getattr(stats, "busy", False) else "idle"
                kernels.add_metric([name, state], stats.kernels)
            else:
                queue.add_metric([name], getattr(stats, "waiting", 0))
                for state in ("warm", "serving", "launching", "parked"):
                    kernels.add_metric([name, state], getattr(stats, state, 0))
        yield queue
        yield kernels


class Metrics:
    """The service's metrics: counters fed by events, state read at each scrape.

    Call :meth:`close` when the service stops, so the events stop reaching it.
    """

    def __init__(self, service: KernelService) -> None:
        self._service = service
        self.registry = CollectorRegistry(auto_describe=False)
        reg = self.registry
        self.refused = Counter("linkserver_handshakes_refused", "Connections refused before or "
                               "in the handshake, by cause.", ["cause"], registry=reg)
        self.requests = Counter("linkserver_requests", "Requests answered, by pool, head and "
                                "outcome.", ["pool", "head", "outcome"], registry=reg)
        self.latency = Histogram("linkserver_request_seconds", "Seconds from a request's turn "
                                 "at the kernel to its final packet.", ["pool", "head"],
                                 buckets=BUCKETS, registry=reg)
        self.evaluation = Counter("linkserver_evaluation_seconds", "Seconds kernels spent on "
                                  "requests, by pool.", ["pool"], registry=reg)
        self.starts = Counter("linkserver_kernel_starts", "Kernel processes started, by backend.",
                              ["backend"], registry=reg)
        self.deaths = Counter("linkserver_kernel_deaths", "Kernels that died while serving, "
                              "by pool.", ["pool"], registry=reg)
        self.culls = Counter("linkserver_kernel_culls", "Kernels ended for being idle, by pool.",
                             ["pool"], registry=reg)
        self.user_requests = Counter("linkserver_user_requests", "Requests answered, by the "
                                     "user whose key the client proved.", ["user"], registry=reg)
        self.user_limits = Counter("linkserver_user_limits", "Times a user was refused or "
                                   "aborted by a limit of theirs, by user and limit.",
                                   ["user", "limit"], registry=reg)
        self.pool_refused = Counter("linkserver_pool_refused", "Links refused because a pool had "
                                    "no kernel free in time.", registry=reg)
        reg.register(_State(service))
        self._pools: dict[str, str] = {}
        self._heads: set[str] = set()
        records.add_sink(self._event)

    def close(self) -> None:
        """Stop counting events."""
        records.remove_sink(self._event)

    def render(self) -> bytes:
        """The text a scrape gets (loop thread: the state is read without locks)."""
        return generate_latest(self.registry)

    def _pool(self, worker: object) -> str:
        """The pool a worker id belongs to (looked up once, then remembered)."""
        key = str(worker)
        pool = self._pools.get(key)
        if pool is None:
            pool = "unknown"
            for name, each in self._service.pools.items():
                if key in each.broker.worker_ids():
                    pool = name
                    break
            if len(self._pools) >= _MAX_WORKERS:
                self._pools.clear()
            self._pools[key] = pool
        return pool

    def _head(self, head: object) -> str:
        name = str(head or "none")
        if name in self._heads:
            return name
        if len(self._heads) < _HEADS:
            self._heads.add(name)
            return name
        return "other"

    def _event(self, name: str, fields: Mapping[str, object]) -> None:
        if name == "request-done":
            pool, head = self._pool(fields.get("worker")), self._head(fields.get("head"))
            self.requests.labels(pool, head, "done").inc()
            ms = fields.get("ms")
            if isinstance(ms, (int, float)):
                self.latency.labels(pool, head).observe(ms / 1000)
                self.evaluation.labels(pool).inc(ms / 1000)
            user = fields.get("user")
            if user is not None:
                self.user_requests.labels(str(user)).inc()
        elif name == "user-limit":
            self.user_limits.labels(str(fields.get("user")), str(fields.get("limit"))).inc()
        elif name == "request-failed":
            self.requests.labels(self._pool(fields.get("worker")), "any",
                                 str(fields.get("tag") or "failed")[:32]).inc()
        elif name in ("auth-failed", "link-rejected"):
            self.refused.labels(_cause(name, str(fields.get("reason") or ""))).inc()
        elif name == "kernel-started":
            self.starts.labels(str(fields.get("backend") or "unknown")).inc()
        elif name == "kernel-died":
            self.deaths.labels(self._pool(fields.get("worker"))).inc()
        elif name == "kernel-culled":
            self.culls.labels(self._pool(fields.get("worker"))).inc()
        elif name == "pool-refused":
            self.pool_refused.inc()
