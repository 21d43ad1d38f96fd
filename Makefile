# The README's two commands: `make up` (whole platform, background) and `make test` (whole suite).
.PHONY: up down status test unit chaos bench schemas apidocs render
# pytest-xdist workers for `make test` (the services wait on I/O more than they compute)
TEST_WORKERS ?= 3
up:
	@bash deploy/local/platform.sh up
down:
	@bash deploy/local/platform.sh down
status:
	@bash deploy/local/platform.sh status
test:
	@bash deploy/local/setup.sh
	@# most of the suite on TEST_WORKERS pytest-xdist workers (a file stays on one worker), then the modules that stop the shared
	@# Kafka or database on their own; both always run, and the target fails if either failed
	@uv run --frozen pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not serial" --durations=20; a=$$?; \
	  uv run --frozen pytest -q -m serial --durations=5; b=$$?; exit $$((a || b))
chaos:  # the long fault-injection run (database stopped 30 s, ten times the suite's load); ~10 min
	@bash deploy/local/setup.sh
	@CHAOS_PROFILE=long uv run --frozen pytest -q -s tests/integration/test_chaos.py
unit:
	@uv run --frozen pytest -q -n 2 -m "not integration"
schemas:
	@uv run --frozen python -m contracts.schema write
apidocs:
	@uv run --frozen python -m servicekit.apidocs
render:  # the deployment files generated from services/registry.toml (README: Adding a service)
	@uv run --frozen python -m servicekit.registry render
