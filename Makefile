# ferry — common tasks. `make test` is what CI runs (via .ci/run).
GO ?= go
# Extra flags for go test, e.g. make test GOTESTFLAGS='-run Postgres -v'.
GOTESTFLAGS ?=

.PHONY: build test deps vet lint demo bench fault tidy

build:
	$(GO) build -o bin/ferry ./cmd/ferry

vet:
	$(GO) vet ./...

# Packages run in parallel up to GOMAXPROCS (2 on CI machines), which also
# bounds how many private PostgreSQL/NATS servers the e2e tests run at once.
# The timeout is above the ~20-minute budget so a hang fails with stack traces
# instead of being killed by CI.
# Installs the test servers' packages when missing (apt-get; see the script).
deps:
	bash deploy/test-deps.sh

test: deps vet
	$(GO) test -count=1 -timeout 25m $(GOTESTFLAGS) ./...

# gofmt check: lists badly formatted files and fails if there are any.
lint:
	@out=$$(gofmt -l $$(find . -name '*.go' -not -path './.demo/*' -not -path './.git/*')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# A whole migration on this machine: two private PostgreSQL servers, ferry
# in between, and a row-by-row comparison. See deploy/demo.sh.
demo:
	bash deploy/demo.sh

# Benchmarks only (-run '^$' skips the tests).
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# The randomized fault suite alone, at length (make test runs one trial of
# each fault per source family): make fault TRIALS=100. Each trial logs its
# seed; FERRY_FAULT_SEED=<seed> replays one. See docs/RELIABILITY.md.
TRIALS ?= 100
fault: deps
	FERRY_FAULT_TRIALS=$(TRIALS) $(GO) test -count=1 -timeout 600m -run TestFaultTrials -v $(GOTESTFLAGS) ./e2e/ ./e2e/mysql ./e2e/dynamodb ./e2e/cassandra

tidy:
	$(GO) mod tidy
