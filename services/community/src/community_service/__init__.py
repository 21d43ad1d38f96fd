"""The community service: community threads with moderation (R-POR-02) and needs/offers matching (R-POR-03)."""
