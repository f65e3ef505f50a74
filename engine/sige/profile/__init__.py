"""MACs, latency and peak-memory helpers shared by every benchmark."""

from sige.profile.latency import LatencyResult, measure_latency
from sige.profile.macs import macs, profile_macs
from sige.profile.memory import peak_memory_mb

__all__ = ["LatencyResult", "macs", "measure_latency", "peak_memory_mb", "profile_macs"]
