"""MACs, latency and peak-memory helpers shared by every benchmark."""

from sige.profile.latency import LatencyResult, measure_latency
from sige.profile.macs import macs, macs_by_convention, profile_macs
from sige.profile.memory import peak_memory_mb

__all__ = ["LatencyResult", "macs", "macs_by_convention", "measure_latency", "peak_memory_mb", "profile_macs"]
