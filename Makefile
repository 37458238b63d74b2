# FlowStack — see README.md.
.PHONY: run build test bench clean

# Installs missing system packages, builds a release binary and starts FlowStack on SQLite.
run:
	scripts/install-deps.sh
	swift build -c release --product flowstack
	swift build -c release --product flowstack-sandbox
	.build/release/flowstack serve --http-port 8080

build:
	scripts/install-deps.sh
	swift build -c release --product flowstack
	swift build -c release --product flowstack-sandbox

# The whole test suite, with its own throwaway PostgreSQL.
test:
	scripts/test.sh

# Benchmarks (release build); writes BENCHMARKS.md.
bench:
	scripts/bench.sh
	scripts/bench-engine.sh

clean:
	rm -rf .build .venv-test .venv-sslyze
