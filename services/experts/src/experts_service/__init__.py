"""Experts service: the two-stage expert registry, profiles and search (R-EX)."""
