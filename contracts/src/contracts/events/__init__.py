"""Event and command payload models, one module per owning service."""
