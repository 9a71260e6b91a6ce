# Transform examples: `make transforms` builds each one into
# $(BIN)/transforms/<name>.wasm. Included by the top Makefile, which defines
# GO and BIN.

TRANSFORMS_GO   := keyfilter rename redact
TRANSFORMS_WAT  := keepall
TRANSFORMS_OUT  := $(BIN)/transforms
TRANSFORMS_WASM := $(patsubst %,$(TRANSFORMS_OUT)/%.wasm,$(TRANSFORMS_GO) $(TRANSFORMS_WAT))
TRANSFORMS_SDK  := $(wildcard sdk/guest/*.go) go.mod go.sum

.PHONY: transforms wabt

transforms: $(TRANSFORMS_WASM)

# Go guests: WASI reactors (c-shared), stripped.
$(TRANSFORMS_OUT)/%.wasm: transforms/examples/%/main.go $(TRANSFORMS_SDK) | $(TRANSFORMS_OUT)
	GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -trimpath -ldflags="-s -w" -o $@ ./transforms/examples/$*

# Hand-written WAT guests.
$(TRANSFORMS_OUT)/%.wasm: transforms/examples/wat/%.wat | $(TRANSFORMS_OUT) wabt
	wat2wasm -o $@ $<

$(TRANSFORMS_OUT):
	mkdir -p $@

# wabt provides wat2wasm; install it only when it is missing, refreshing the
# package lists only if the first attempt fails.
wabt:
	@command -v wat2wasm >/dev/null 2>&1 || apt-get install -y wabt || { apt-get update && apt-get install -y wabt; }
