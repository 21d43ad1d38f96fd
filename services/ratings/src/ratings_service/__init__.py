"""Ratings service: ratings, windowed aggregates and pending ratings (R-RAT)."""
