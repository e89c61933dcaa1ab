# kopsdr: durable etcd backup and disaster recovery for kops clusters.
export GOTOOLCHAIN := local
GO        ?= go
BIN       := bin
# Pinned tools the tests need, installed with `go install` into $(TOOLS).
VERSITYGW := github.com/versity/versitygw/cmd/versitygw@v1.8.0
TEMPORAL_CLI := github.com/temporalio/cli/cmd/temporal@v1.5.1
TOOLS     := $(CURDIR)/.tools
export PATH := $(TOOLS):$(PATH)
# The end-to-end package links the Temporal server; give it room.
TEST_FLAGS ?= -timeout 60m

.PHONY: all build dev test test-short bench tools compose-check rules-check clean record-histories

all: build

build: ## Build bin/kopsdr-worker and bin/kopsdr
	CGO_ENABLED=0 $(GO) build -o $(BIN)/kopsdr-worker ./worker
	CGO_ENABLED=0 $(GO) build -o $(BIN)/kopsdr ./starter

# `make dev` ports and state; e.g. `make dev DEV_PORT=17233 UI_PORT=18233` when 7233 or 8233 is taken.
DEV_PORT ?= 7233
UI_PORT  ?= 8233
DEV_DATA ?= .kopsdr-dev

dev: build ## Run kopsdr locally: embedded Temporal (127.0.0.1:$(DEV_PORT)), Web UI (127.0.0.1:$(UI_PORT)) and the worker
	$(BIN)/kopsdr-worker --dev --data-dir $(DEV_DATA) --dev-port $(DEV_PORT) --ui-port $(UI_PORT)

tools: $(TOOLS)/versitygw $(TOOLS)/temporal ## Install the pinned test tools

# Static, like kopsdr's own binaries (CGO_ENABLED=0): one build
# configuration, so the standard library and the modules the tools share with
# kopsdr at the same version compile once on a machine with an empty cache.
$(TOOLS)/versitygw:
	CGO_ENABLED=0 GOBIN=$(TOOLS) $(GO) install $(VERSITYGW)

$(TOOLS)/temporal:
	CGO_ENABLED=0 GOBIN=$(TOOLS) $(GO) install $(TEMPORAL_CLI)

# Unit packages, for test-short. test/run keeps the same list, and runs
# them under the race detector but for the two that link the Temporal server
# (minutes to build with -race), as the packages under test/ do.
UNIT_PKGS := ./internal/... ./workflows/... ./activities/... ./starter/... ./worker/...

# test/run compiles everything first (the e2e test binary while make tools
# installs the pinned tools, then vet and the other test binaries), then runs
# the tests with nothing compiling beside them: test/e2e in four shards at
# once with the unit tests and the other packages (the end-to-end tests
# mostly wait), and prints each lane's output and wall time.
test: rules-check ## Run every test against real Temporal, etcd, S3 and Docker (unit tests with -race)
	GO=$(GO) ./test/run

test-short: ## Unit tests only, with -race
	$(GO) test -race -short $(UNIT_PKGS)

# `make bench` results: every benchmark appends rows here, printed as one table at the end.
BENCH_RESULTS ?= $(CURDIR)/$(BIN)/bench-results.jsonl
# BENCH_8G=1 adds the 8 GiB database to the large-database rows (about 25 more minutes, 16 GB of disk).
BENCH_8G ?=

bench: tools ## Print one table: backup vs bare snapshot vs by hand, large databases, a 1000-cluster fleet, three workers
	@mkdir -p $(BIN) && rm -f $(BENCH_RESULTS)
	KOPSDR_BENCH_RESULTS=$(BENCH_RESULTS) KOPSDR_BENCH_8G=$(BENCH_8G) $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 120m ./test/bench
	KOPSDR_BENCH_RESULTS=$(BENCH_RESULTS) $(GO) test -run '^TestWorkersShareAndSurviveAKill$$' -bench 'Fleet' -benchtime 1x -timeout 60m ./test/e2e
	@$(GO) run ./test/benchtable/print $(BENCH_RESULTS)

PROMTOOL ?= promtool
RULES    := deploy/prometheus

rules-check: ## Check the Prometheus alert rules and run their unit tests (promtool)
	@command -v $(PROMTOOL) >/dev/null || { echo "rules-check: promtool not found; install it with: apt-get install prometheus"; exit 1; }
	$(PROMTOOL) check rules $(RULES)/kopsdr-rules.yml
	cd $(RULES) && $(PROMTOOL) test rules kopsdr-rules.test.yml

compose-check: ## Check docker-compose.yml parses
	docker-compose -f docker-compose.yml config -q || docker compose -f docker-compose.yml config -q

clean:
	rm -rf $(BIN) $(TOOLS)

record-histories: tools ## Record the replay tests' histories (workflows/testdata/histories) from real runs
	KOPSDR_RECORD_HISTORIES=1 $(GO) test $(TEST_FLAGS) -count=1 -run 'TestEtcdManagerRestore$$|TestEtcdManagerRestoreTimeoutShowsLogs|TestScheduleFiresAndBacksUp|TestVolumeSnapshotThreeMasters|TestVolumeRestoreTagsAndZones|TestContainerdRestoreOverSSH$$|TestEtcdManagerRestoreByReboot|TestRestoreDrills|TestPointInTimeCheckpoints|TestPointInTimeRestore' ./test/e2e
