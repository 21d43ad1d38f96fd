"""The small kit every portal service is built from (see `service.Service`)."""
