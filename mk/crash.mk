# Crash campaign: `make crash-campaign` runs slipstream-crash, which drives
# the real slipstream binary and store plugins from outside and injects
# faults (host, plugin and nats-server SIGKILLs, cut connections, a cluster
# leader killed), then compares every fold with its bucket on its own; it
# prints one table and fails on any divergence, failed read or orphaned
# plugin. About 10 minutes. `make crash-campaign-smoke` runs one cycle of
# each scenario with small data, in well under a minute or two. Included by
# the top Makefile, which defines GO, BIN, build and tools.
#
# CRASH_FLAGS adds flags, e.g. CRASH_FLAGS="-cycles 50 -store pebble" or
# CRASH_FLAGS="-scenarios nats-kill,conn-cut -v" (bin/slipstream-crash -h).

CRASH_CMD   := $(BIN)/slipstream-crash
CRASH_FLAGS ?=

.PHONY: crash-campaign crash-campaign-smoke $(CRASH_CMD)

# Always relinked: go build's cache makes an unchanged build cheap.
$(CRASH_CMD):
	$(GO) build -o $@ ./crash

## crash-campaign: every fault scenario on both stores, about 10 minutes
crash-campaign: build tools $(CRASH_CMD)
	./$(CRASH_CMD) -bin $(BIN) $(CRASH_FLAGS)

## crash-campaign-smoke: one cycle of each scenario, small data
crash-campaign-smoke: build tools $(CRASH_CMD)
	./$(CRASH_CMD) -bin $(BIN) -smoke $(CRASH_FLAGS)
