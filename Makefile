# khadga's one test command is `make test`. On a fresh Debian machine, run as
# root, it first installs what the tests need (scripts/setup.sh).
GO ?= go
FUZZTIME ?= 30s

.PHONY: test setup tidy vet build-static fuzz bench

test: setup tidy vet build-static
	$(GO) test -race -count=1 -timeout 25m ./...

setup:
	@bash scripts/setup.sh

# go.mod and go.sum must be exactly what `go mod tidy` makes of the imports:
# every requirement the code imports is direct, the rest indirect.
tidy:
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }

# The commands must also build for Windows and macOS (build only: the
# tests run here). khadga-bench builds there to a stub that says it needs
# Linux.
vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	GOOS=windows $(GO) build -o /dev/null ./cmd/...
	GOOS=darwin $(GO) build -o /dev/null ./cmd/...

# The server binary must build without cgo.
build-static:
	CGO_ENABLED=0 $(GO) build -o /dev/null ./cmd/khadga
	CGO_ENABLED=0 $(GO) build ./...

# Each fuzz target for FUZZTIME (not part of `make test`).
fuzz:
	@bash scripts/fuzz.sh $(FUZZTIME)

bench:
	$(GO) run ./cmd/khadga-bench
