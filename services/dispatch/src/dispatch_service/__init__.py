"""Dispatch service: dispatch requests, screening, lifecycle and fees (R-DSP)."""
