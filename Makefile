# Shortcuts for the scripts in scripts/ (the scripts are what README, CI and newcomers run).
.PHONY: setup test lint bench
setup:
	bash scripts/setup.sh
test:
	bash scripts/test.sh
lint:
	bash scripts/lint.sh
bench:
	bash scripts/bench.sh
