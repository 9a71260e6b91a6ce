# slipstream — the two commands a newcomer needs are `make run` and `make test`.
GO ?= go
BIN := bin
TOOLS := $(CURDIR)/.cache/tools
NATS_SERVER_VERSION := v2.15.3
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

export CGO_ENABLED := 1

.PHONY: all build run test vet unit race smoke conformance-cli proto tools fuzz crash crash-tests clean FORCE

all: build

## build: the slipstream binary, the store plugins and the example transforms, under bin/
build: $(BIN)/slipstream plugins transforms

$(BIN)/slipstream: FORCE
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $@ ./cmd/slipstream

## run: build everything and start config.example.toml with the embedded NATS server
run: build
	./$(BIN)/slipstream run --config config.example.toml

## test: vet, the whole test suite, the concurrent packages again under the
## race detector, every shipped plugin through the conformance CLI, and
## short smoke runs of fuzz, crash and bench
test: build tools vet unit race conformance-cli smoke

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...

unit:
	PATH="$(TOOLS):$$PATH" SLIPSTREAM_BIN="$(CURDIR)/$(BIN)" $(GO) test -count=1 -timeout 25m ./...

## race: the packages that run goroutines of their own, under the race detector
RACE_PKGS := ./host/fold ./host/watch ./host/chain ./host/api ./host/connect ./sdk ./internal/pluginhost ./transforms ./client ./internal/sdnotify
race:
	PATH="$(TOOLS):$$PATH" SLIPSTREAM_BIN="$(CURDIR)/$(BIN)" $(GO) test -race -count=1 -timeout 25m $(RACE_PKGS)

smoke:
	$(MAKE) --no-print-directory fuzz FUZZTIME=5s
	$(MAKE) --no-print-directory crash-tests CRASH_COUNT=1 RAPID_CHECKS=20
	$(MAKE) --no-print-directory crash-campaign-smoke
	$(MAKE) --no-print-directory bench-smoke

## conformance-cli: prove each shipped plugin binary as a third party would
conformance-cli: build
	@for p in $(BIN)/slipstream-store-*; do \
	  echo "== slipstream conformance --plugin $$p"; \
	  ./$(BIN)/slipstream conformance --plugin $$p || exit 1; \
	done

## tools: the nats-server binary for tests that must kill a server process
tools: $(TOOLS)/nats-server

$(TOOLS)/nats-server:
	GOBIN=$(TOOLS) $(GO) install github.com/nats-io/nats-server/v2@$(NATS_SERVER_VERSION)

## proto: regenerate the store plugin protocol (internal/storepb)
proto:
	@command -v protoc >/dev/null || (apt-get install -y protobuf-compiler || (apt-get update && apt-get install -y protobuf-compiler))
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	cd internal/storepb && PATH="$(TOOLS):$$PATH" protoc --go_out=. --go_opt=paths=source_relative \
	  --go-grpc_out=. --go-grpc_opt=paths=source_relative store.proto

## fuzz: fuzz every parser of outside input, each for FUZZTIME (1m by
## default): config, the transform ABI's answers, the packed batch a plugin
## receives, KV message decoding, the HTTP query parameters. Each target's
## seed corpus is in its package's testdata/fuzz and runs in make test.
FUZZTIME ?= 1m
FUZZ_TARGETS := \
	./host/artifact:FuzzReader \
	./host/config:FuzzParse \
	./transforms:FuzzDecodeBatch \
	./transforms:FuzzDecodeRecord \
	./transforms:FuzzErrorBody \
	./sdk:FuzzAppendPacked \
	./host/watch:FuzzDecode \
	./host/api:FuzzScanQuery
fuzz:
	@for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; name=$${t##*:}; \
	  echo "== fuzz $$name in $$pkg for $(FUZZTIME)"; \
	  out=$$($(GO) test $$pkg -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) 2>&1); rc=$$?; echo "$$out"; \
	  if [ $$rc -ne 0 ]; then \
	    echo "$$out" | grep -q 'Failing input' && exit 1; \
	    echo "== the fuzzer stopped without a failing input (a known flake of short runs): once more"; \
	    $(GO) test $$pkg -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) || exit 1; \
	  fi; \
	done

## crash: the fault campaign of mk/crash.mk (the real binaries from outside:
## host, plugin and server SIGKILLs, cut connections, a cluster losing its
## leader; one table of figures), then the kill tests many times over
crash: crash-campaign crash-tests

## crash-tests: the kill and failure tests, many times over (CRASH_COUNT=20):
## plugins SIGKILLed mid-bootstrap, stores failing and crashing under the
## cursor-authority model, the host SIGKILLed, and the floor guard model
CRASH_COUNT ?= 20
RAPID_CHECKS ?= 500
crash-tests: build
	SLIPSTREAM_BIN="$(CURDIR)/$(BIN)" $(GO) test -count=$(CRASH_COUNT) -timeout 60m \
	  -run 'TestPluginKilledMidBootstrap|TestCursorAuthorityModel|TestHostKilled|TestFloorGuardModel' \
	  ./host/fold ./host/watch ./cmd/slipstream -rapid.checks=$(RAPID_CHECKS)

clean:
	rm -rf $(BIN) .cache

FORCE:

include $(wildcard mk/*.mk)
