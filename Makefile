# The README's two commands: `make up` (whole platform, background) and `make test` (whole suite).
.PHONY: up down status test unit bench schemas apidocs
up:
	@bash deploy/local/platform.sh up
down:
	@bash deploy/local/platform.sh down
status:
	@bash deploy/local/platform.sh status
test:
	@bash deploy/local/setup.sh
	@uv run --frozen pytest -q
unit:
	@uv run --frozen pytest -q -m "not integration"
schemas:
	@uv run --frozen python -m contracts.schema write
apidocs:
	@uv run --frozen python -m servicekit.apidocs
