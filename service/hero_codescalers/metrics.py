"""Prometheus metrics of the service, served at `GET /metrics`.

One registry per application (not the process-global one), so that tests and
several apps in a process never collide.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .logs import Throttled

if TYPE_CHECKING:
    from .record import RunEnded

MANUAL = "manual"  # the `policy` label of the runs callers asked for

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The service's counters, histograms and gauges."""

    def __init__(self) -> None:
        # Calls or requests refused for the in-flight budget: one log line per interval.
        self.busy_log = Throttled("server_busy")
        self.registry = CollectorRegistry()
        self.calls = Counter(
            "hero_codescalers_rpc_calls",
            "JSON-RPC calls answered, by method and outcome (ok or the error code)",
            ["method", "outcome"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "hero_codescalers_rpc_duration_seconds",
            "Time to answer a JSON-RPC call, by method",
            ["method"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5, 10, 60, 600),
            registry=self.registry,
        )
        self.cleanups = Counter(
            "hero_codescalers_cleanups",
            "Cleanup runs, by outcome (ok, partial, cancelled, error) and whether dry",
            ["outcome", "dry_run"],
            registry=self.registry,
        )
        self.last_run_timestamp = Gauge(
            "hero_codescalers_cleanup_last_run_timestamp_seconds",
            "When the last real (not dry) cleanup run ended, by policy (manual: a caller's)",
            ["policy"],
            registry=self.registry,
        )
        self.last_run_duration = Gauge(
            "hero_codescalers_cleanup_last_run_duration_seconds",
            "How long the last real cleanup run took, by policy",
            ["policy"],
            registry=self.registry,
        )
        self.last_run_success = Gauge(
            "hero_codescalers_cleanup_last_run_success",
            "Whether the last real cleanup run ended ok (1: complete, no errors) or not (0), "
            "by policy",
            ["policy"],
            registry=self.registry,
        )
        self.policy_fires = Counter(
            "hero_codescalers_policy_fires",
            "Times a retention policy was due, by policy and event: scheduled (its run "
            "started) or skipped (its last run, or another cleanup, was still going)",
            ["policy", "event"],
            registry=self.registry,
        )
        self.jobs_deleted = Counter(
            "hero_codescalers_jobs_deleted", "Jobs deleted by cleanups", registry=self.registry
        )
        self.actions_deleted = Counter(
            "hero_codescalers_actions_deleted",
            "Actions deleted by cleanups",
            registry=self.registry,
        )
        self.deletion_failures = Counter(
            "hero_codescalers_deletion_failures",
            "Jobs and actions a cleanup could not delete (not those kept in use)",
            registry=self.registry,
        )
        self.actions_in_use = Counter(
            "hero_codescalers_actions_in_use",
            "Actions a cleanup kept because other jobs still use them",
            registry=self.registry,
        )
        self.http_refusals = Counter(
            "hero_codescalers_http_refusals",
            "Requests refused at the HTTP level, by status (400 malformed, 404, 405, 408, "
            "413, 415, 503)",
            ["status"],
            registry=self.registry,
        )
        self.calls_refused_busy = Counter(
            "hero_codescalers_calls_refused_busy",
            "Calls refused (-32012) because the in-flight budget was spent",
            registry=self.registry,
        )
        self.connections_refused = Counter(
            "hero_codescalers_connections_refused",
            "Connections closed at once: over the connection cap, or out of file descriptors",
            ["reason"],
            registry=self.registry,
        )
        self.connections_open = Gauge(
            "hero_codescalers_connections_open",
            "Connections open now",
            registry=self.registry,
        )
        self.stats_walks = Counter(
            "hero_codescalers_stats_walks",
            "Walks of hero_proc's listings made for `stats` (calls share or reuse one)",
            registry=self.registry,
        )
        self.hero_proc_up = Gauge(
            "hero_codescalers_hero_proc_up",
            "Whether hero_proc answered the last health check (1) or not (0)",
            registry=self.registry,
        )

    def for_method(self, method: str) -> Callable[[int | None, float], None]:
        """What to call when a call of `method` is answered (its code, None when ok, and
        its duration): the label lookups are done once, not on every call."""
        ok = self.calls.labels(method, "ok")
        duration = self.duration.labels(method)

        def observe(code: int | None, seconds: float) -> None:
            (ok if code is None else self.calls.labels(method, str(code))).inc()
            duration.observe(seconds)

        return observe

    def observe_run(self, run: RunEnded) -> None:
        """A cleanup run that ended (its summary, or None when it failed as a whole)."""
        self.cleanups.labels(run.outcome, str(run.dry_run).lower()).inc()
        if not run.dry_run:
            self.last_run(run.policy, run.outcome, run.finished_at_ms, run.duration_ms)
        summary = run.summary
        if summary is None:
            return
        self.jobs_deleted.inc(summary.jobs_deleted)
        self.actions_deleted.inc(summary.actions_deleted)
        self.deletion_failures.inc(summary.jobs_failed + summary.actions_failed)
        self.actions_in_use.inc(summary.actions_in_use)

    def last_run(
        self, policy: str | None, outcome: str, finished_at_ms: int, duration_ms: Any
    ) -> None:
        """Set the last-run gauges of `policy` (None: a caller's run)."""
        label = MANUAL if policy is None else policy
        self.last_run_timestamp.labels(label).set(finished_at_ms / 1000)
        self.last_run_duration.labels(label).set((duration_ms or 0) / 1000)
        self.last_run_success.labels(label).set(1 if outcome == "ok" else 0)

    def policy_fired(self, policy: str, event: str) -> None:
        """The scheduler found `policy` due: `scheduled` or `skipped`."""
        self.policy_fires.labels(policy, event).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
