# Performance: `make bench` (open-loop pre-venue benchmark beside bare baselines) and
# `make loadtest` (locust scenarios, verdict against the blueprint latency table).
# Both start their own platform at port offset 7000 and stop it afterwards.
# Results land in loadtests/results/. locust 2.47.0 installs into the venv without
# conflicting with requirements.lock (pip check is clean); it is not in the lock file.

LOCUST_STAMP := $(VENV)/.locust-installed
LOADTEST_ARGS ?= --rate 15 --users 15 --spawn-rate 5 --duration 60
BENCH_ARGS ?=

.PHONY: bench loadtest

$(LOCUST_STAMP): $(STAMP)
	$(BIN)/pip install --quiet locust==2.47.0
	$(BIN)/pip check
	touch $@

bench: $(STAMP)
	$(BIN)/python -m loadtests.bench $(BENCH_ARGS)

loadtest: $(STAMP) $(LOCUST_STAMP)
	$(BIN)/python -m loadtests.run_loadtest --start-platform $(LOADTEST_ARGS)
