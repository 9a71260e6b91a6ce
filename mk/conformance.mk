# Store plugins and their conformance suite. Included by the top Makefile,
# which defines GO and BIN.
#
# A store plugin NAME is the executable slipstream-store-NAME: the name the
# host runs for `store = "NAME"` in a fold.

PLUGINS := pebble sqlite example
PLUGIN_PKG_pebble  := ./plugins/pebble
PLUGIN_PKG_sqlite  := ./plugins/sqlite
PLUGIN_PKG_example := ./sdk/example

.PHONY: plugins conformance

## plugins: the store plugins, as $(BIN)/slipstream-store-NAME
plugins: $(patsubst %,$(BIN)/slipstream-store-%,$(PLUGINS))

# FORCE: go build knows better than make whether a binary is stale.
$(BIN)/slipstream-store-%: FORCE
	$(GO) build -o $@ $(PLUGIN_PKG_$*)

## conformance: the store conformance suite against every plugin, and its self-test
conformance:
	$(GO) test -count=1 ./conformance
