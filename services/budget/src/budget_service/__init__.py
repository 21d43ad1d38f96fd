"""Budget service: fiscal-year allocation frames and the ledger (R-BUD)."""
