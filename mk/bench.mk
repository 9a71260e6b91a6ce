# Benchmarks (issue 6): `make bench` prints one table of slipstream's figures
# beside a raw nats.go baseline measured in the same run (BENCHMARKS.md says
# how to read it); `make bench-smoke` runs the same program with tiny sizes
# and fails only when the program does, never on a missed target. Included by
# the top Makefile, which defines GO, BIN and build.
#
# BENCH_FLAGS adds flags, e.g. BENCH_FLAGS="-keys 200000 -backends sqlite"
# or BENCH_FLAGS="-cpuprofile cpu.prof" (run bin/slipstream-bench -h for all).

BENCH_CMD   := $(BIN)/slipstream-bench
BENCH_FLAGS ?=

.PHONY: bench bench-smoke $(BENCH_CMD)

# Always relinked: go build's cache makes an unchanged build cheap.
$(BENCH_CMD):
	$(GO) build -o $@ ./bench

## bench: the benchmark table; 1M keys, each target row a median of 3 runs beside its baseline, 12-15 minutes
bench: build $(BENCH_CMD)
	./$(BENCH_CMD) -bin $(BIN) $(BENCH_FLAGS)

## bench-smoke: the benchmark program with tiny sizes, in well under a minute
bench-smoke: build $(BENCH_CMD)
	./$(BENCH_CMD) -bin $(BIN) -smoke $(BENCH_FLAGS)
