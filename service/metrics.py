"""Prometheus metrics of the pipeline (served by `prometheus_client.start_http_server`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONSUMED = Counter("keye_worker_consumed_total", "work messages taken from Kafka")
ANALYZED = Counter("keye_worker_analyzed_total", "videos analyzed and made durable")
FAILED = Counter("keye_worker_failed_total", "videos that failed permanently", ["error_type"])
RETRIED = Counter("keye_worker_retries_total", "retries after a transient failure", ["kind"])
DLQ = Counter("keye_dlq_total", "messages sent to the dead-letter topic", ["stage"])
LAG = Gauge("keye_worker_lag", "messages behind the end of the topic", ["topic", "partition"])
STAGE = Histogram(
    "keye_stage_seconds",
    "latency of one pipeline stage for one video",
    ["stage"],
    buckets=(0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
VECTORS = Counter("keye_vector_sink_points_total", "points upserted by the vector sink")
