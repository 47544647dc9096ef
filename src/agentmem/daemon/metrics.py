"""Prometheus metrics: the statistics snapshot as gauges, served over HTTP from a thread.

Off by default (``agentmem daemon --metrics 127.0.0.1:PORT``). The address must be a loopback
one unless ``--metrics-public`` says otherwise: the numbers show which agents hold what.

The HTTP thread never touches a store (which is not thread-safe): :class:`StatsCollector`
renders the :class:`~agentmem.daemon.observe.Snapshot` the loop thread published at its last
tick, at most a second old. Per-agent series are bounded: the :data:`TOP_AGENTS` agents of a
domain with the most logical bytes get their own ``agent`` label, the rest are summed under
``agent="_other"``, so a swarm of thousands of short-lived agents cannot flood the server.

``prometheus_client`` is imported by this module only, and only when metrics are on.
"""

from __future__ import annotations

import ipaddress
import socket
import socketserver
import threading
from collections.abc import Iterator
from typing import Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from agentmem.daemon.observe import Observer
from agentmem.statstext import sort_agents

#: Agents per domain with their own ``agent`` label; the rest are summed under ``_other``.
TOP_AGENTS: Final = 50
#: The ``agent`` label of the rest.
OTHER: Final = "_other"


def parse_address(text: str, *, public: bool = False) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> ``(host, port)``.

    ``ValueError`` for a malformed address, a host that is not an IP address (``localhost``
    aside), or a non-loopback host without ``public``.
    """
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"metrics address must be HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host == "localhost":
        host = "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"metrics host must be an IP address, got {host!r}") from None
    if not ip.is_loopback and not public:
        raise ValueError(
            f"{host} is not a loopback address: metrics name every agent; "
            "pass --metrics-public to serve them beyond this machine"
        )
    return host, int(port_text)


#: Gauges of a domain: name (after ``agentmem_``), help, and the ``StoreStats`` field.
_DOMAIN_GAUGES: Final = (
    ("logical_bytes", "Bytes agents hold, each counting its own copy", "logical_bytes"),
    ("unique_bytes", "Plain bytes of distinct live chunks (after dedup)", "unique_bytes"),
    ("physical_bytes", "Bytes held: hot pages, warm frames, dictionaries", "physical_bytes"),
    ("dedup_ratio", "Logical bytes / unique bytes", "dedup_ratio"),
    ("compression_ratio", "Warm plain bytes / warm frame bytes", "compression_ratio"),
    ("chunks", "Distinct live chunks", "chunks"),
    ("segments", "Live hot segments", "segments"),
    ("handles", "Live handles", "handles"),
    ("messages", "Distinct live conversation messages", "messages"),
    ("metadata_bytes", "Estimated bytes of index records", "metadata_bytes"),
)
#: Gauges of a tier (label ``tier``): name, help, ``TierStats`` field.
_TIER_GAUGES: Final = (
    ("tier_logical_bytes", "Plain bytes of the chunks in a tier", "raw_bytes"),
    ("tier_physical_bytes", "Memory (hot) or frame bytes (warm) of a tier", "physical_bytes"),
    ("tier_chunks", "Chunks in a tier", "chunks"),
)
#: Gauges of an agent (label ``agent``): the ``AgentStats`` field prefix and help.
_AGENT_GAUGES: Final = (
    ("logical", "Bytes an agent holds (the top agents by it; the rest as _other)"),
    ("unique", "Plain bytes of chunks only this agent references"),
    ("shared", "Plain bytes of this agent's chunks that other agents reference too"),
    ("compressed", "Plain bytes of this agent's chunks that live compressed"),
)
#: Gauges of the daemon process: ``DaemonStats`` field and help; the metric is
#: ``agentmem_daemon_<field>`` (a field that already starts with ``daemon_`` keeps its name).
_DAEMON_GAUGES: Final = (
    ("pss_bytes", "The daemon's proportional set size"),
    ("uptime_seconds", "Seconds since the daemon started"),
    ("connections", "Open connections, observers included"),
    ("segment_bytes", "Touched pages of live segments, all domains"),
    ("daemon_only_segment_bytes", "Touched pages of segments no agent maps"),
)
#: Counters of the daemon process, named as the gauges (``_total`` is added).
_DAEMON_COUNTERS: Final = (
    ("requests", "Requests served"),
    ("errors", "Requests answered with an error"),
    ("cpu_seconds", "CPU seconds of the daemon process, all threads"),
    ("maintenance_cpu_seconds", "CPU seconds of the maintenance ticks (demotions)"),
    ("statistics_cpu_seconds", "CPU seconds of the statistics published each second"),
    ("gc_cpu_seconds", "CPU seconds of garbage collection (across the parts)"),
    ("gc_full_collections", "Full garbage collections"),
)
#: Counters of a domain's tiering: ``TieringStats`` field (the metric ``agentmem_<field>``,
#: ``_total`` added) and help.
_TIERING_COUNTERS: Final = (
    ("compress_cpu_seconds", "CPU seconds compressing frames"),
    ("decode_cpu_seconds", "CPU seconds decoding frames"),
    ("journal_sync_cpu_seconds", "CPU seconds in journal fdatasync"),
)


def _daemon_metric(field: str) -> str:
    return "agentmem_daemon_" + field.removeprefix("daemon_")


class StatsCollector(Collector):
    """A custom collector over the observer's last snapshot. Thread-safe (reads only)."""

    def __init__(self, observer: Observer) -> None:
        self._observer = observer

    def collect(self) -> Iterator[Metric]:
        snap = self._observer.snapshot
        if snap is None:
            return
        g = _Gauges()
        for uid, st in sorted(snap.domains.items()):
            dom = str(uid)
            for name, doc, field in _DOMAIN_GAUGES:
                g.add(name, doc, dom, getattr(st, field))
            for tier in (st.hot, st.warm):
                for name, doc, field in _TIER_GAUGES:
                    g.add(name, doc, dom, getattr(tier, field), tier=tier.tier)
            if st.daemon is not None:
                for state, n in sorted(st.daemon.agents_by_state.items()):
                    g.add("agents", "Agents by state", dom, n, state=state)
                g.add("observers", "Observer sessions (stats, top)", dom, st.daemon.observers)
            ranked = sort_agents(st.per_agent, "logical")
            for a in ranked[:TOP_AGENTS]:
                for key, doc in _AGENT_GAUGES:
                    value = getattr(a, key + "_bytes")
                    if value is not None:  # not computed yet for an agent this new
                        g.add(f"agent_{key}_bytes", doc, dom, value, agent=a.name)
            rest = ranked[TOP_AGENTS:]
            if rest:
                for key, doc in _AGENT_GAUGES:
                    total = sum(getattr(a, key + "_bytes") or 0 for a in rest)
                    g.add(f"agent_{key}_bytes", doc, dom, total, agent=OTHER)
        yield from g.families()
        for field, doc in _TIERING_COUNTERS:
            family = CounterMetricFamily("agentmem_" + field, doc, labels=["domain"])
            for uid, st in sorted(snap.domains.items()):
                if st.tiering is not None:
                    family.add_metric([str(uid)], getattr(st.tiering, field))
            yield family
        d = next((st.daemon for st in snap.domains.values() if st.daemon is not None), None)
        if d is not None:
            for field, doc in _DAEMON_GAUGES:
                yield GaugeMetricFamily(_daemon_metric(field), doc, value=getattr(d, field))
            for field, doc in _DAEMON_COUNTERS:
                yield CounterMetricFamily(_daemon_metric(field), doc, value=getattr(d, field))
        yield GaugeMetricFamily(
            "agentmem_snapshot_timestamp_seconds",
            "When these statistics were taken (Unix time)",
            value=snap.taken_at,
        )


class _Gauges:
    """Gauge families by name, each labelled by ``domain`` plus at most one more label."""

    def __init__(self) -> None:
        self._families: dict[str, GaugeMetricFamily] = {}

    def add(self, name: str, doc: str, domain: str, value: float, **label: str) -> None:
        family = self._families.get(name)
        if family is None:
            family = self._families[name] = GaugeMetricFamily(
                "agentmem_" + name, doc, labels=["domain", *label]
            )
        family.add_metric([domain, *label.values()], value)

    def families(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families.values()


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class MetricsServer:
    """The HTTP endpoint, in two steps: :meth:`bind` before the daemon detaches (so a busy port
    fails ``agentmem daemon`` itself, not a background process), :meth:`start` after (a thread
    does not survive ``fork``). ``prometheus_client.start_http_server`` does both at once."""

    def __init__(self, observer: Observer, host: str, port: int) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(StatsCollector(observer))
        self.host, self.port = host, port
        self._httpd: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def bind(self) -> tuple[str, int]:
        """Bind the listening socket; returns the address bound. ``OSError`` if it cannot."""
        server_class = _Server6 if ":" in self.host else _Server
        self._httpd = make_server(
            self.host,
            self.port,
            make_wsgi_app(self.registry),
            server_class,
            handler_class=_QuietHandler,
        )
        return self.host, self._httpd.server_address[1]

    def start(self) -> None:
        """Serve from a daemon thread."""
        assert self._httpd is not None
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="agentmem-metrics", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            if self._thread is not None:
                self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
