"""Notifications service: inboxes, please-rate prompts and e-mail (R-NOT)."""
