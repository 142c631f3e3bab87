# The two set-up commands of README.md: `make demo` (install + the closed loop) and `make test`.
.PHONY: install demo test compile
install:
	scripts/install.sh
demo: install
	scripts/demo.sh
test: install
	.venv/bin/python -m pytest -v --durations=15 tests
compile: install
	.venv/bin/admlops compile
