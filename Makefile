# sparkkit: every target creates the virtual environment when it is missing.
HOST ?= rehearsal
VENV := .venv
PY := $(VENV)/bin/python
SPARKKIT := $(VENV)/bin/sparkkit
ARGS ?=


.PHONY: fleet-testbed fleet-testbed-down
.PHONY: help venv testbed deploy deploy-and-verify diff status rollback render down probe verify bench test test-unit test-vllm clean

help:
	@echo "make testbed                 start the rehearsal host (dockerd, sshd on 127.0.0.1:2222, images)"
	@echo "make deploy HOST=rehearsal   deploy the release for HOST (ARGS='-e key=value --break-lock ...')"
	@echo "make deploy-and-verify       deploy, probe, check the gates; keep or roll back; write the report"
	@echo "make verify                  probe and judge the running release (no deploy)"
	@echo "make diff|status|rollback|down|render|probe HOST=..."
	@echo "make test                    unit + integration tests (starts the testbed)"
	@echo "make test-vllm               the contract tier: simulator and real vLLM (CPU build, tiny model) side by side"
	@echo "make deploy-and-verify HOST=rehearsal_fleet [ARGS='--serial 1']   a fleet of namespace hosts"

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

testbed: venv
	bash testbed/setup.sh

# The rehearsal host needs its testbed, the fleet rehearsal hosts (group rehearsal_fleet,
# hosts skit-fleet-N) their namespaces too; a real host needs nothing local.
define needs_testbed
	@if [ "$(HOST)" = "rehearsal" ]; then bash testbed/setup.sh; fi
	@case ",$(HOST)," in *,rehearsal_fleet,*|*,skit-fleet-*) bash testbed/setup.sh && bash testbed/netns.sh up $(FLEET_HOSTS);; esac
endef

deploy: venv
	$(needs_testbed)
	$(SPARKKIT) deploy $(HOST) $(ARGS)

deploy-and-verify: venv
	$(needs_testbed)
	$(SPARKKIT) deploy-and-verify $(HOST) $(ARGS)

verify: venv
	$(needs_testbed)
	$(SPARKKIT) verify $(HOST) $(ARGS)

diff: venv
	$(needs_testbed)
	$(SPARKKIT) diff $(HOST) $(ARGS)

status: venv
	$(needs_testbed)
	$(SPARKKIT) status $(HOST) $(ARGS)

rollback: venv
	$(needs_testbed)
	$(SPARKKIT) rollback $(HOST) $(ARGS)

down: venv
	$(needs_testbed)
	$(SPARKKIT) down $(HOST) $(ARGS)

render: venv
	$(SPARKKIT) render $(HOST) --out out/$(HOST) $(ARGS)

test-unit: venv
	$(PY) -m pytest -q -m "not integration"

# What CI runs (.ci/run). Unit and integration tests side by side on TEST_WORKERS pytest-xdist workers
# (each with host ports of its own; tests/conftest.py keeps each module, and the two fleet modules
# together, on one worker and in order), then the tests that measure time, alone. Both parts always run.
TEST_WORKERS ?= 4
test: testbed
	$(PY) -m pytest -q -n $(TEST_WORKERS) -m "not timing"; parallel=$$?; \
	$(PY) -m pytest -q -m timing && exit $$parallel

# The contract tier (docs/testing.md): vLLM's CPU build in .vllm-venv and a tiny model made here in
# .vllm-model (both cached), then `vllm serve` with the parsers we render, and tests/contract/ against it
# and the simulator. Not part of `make test`; .ci/run runs it after.
test-vllm: venv
	bash tools/vllm/venv.sh
	.vllm-venv/bin/python tools/vllm/make_model.py
	$(PY) tools/vllm/contract.py

clean:
	rm -rf out .pytest_cache

probe: venv
	$(needs_testbed)
	$(SPARKKIT) probe $(HOST) $(ARGS)

bench: testbed
	$(PY) bench/run.py
	$(PY) bench/fleet_bench.py
	$(PY) bench/results.py

# fleet rehearsal hosts (network namespaces with their own sshd): make fleet-testbed [FLEET_HOSTS=3]
FLEET_HOSTS ?= 3
fleet-testbed: testbed
	bash testbed/netns.sh up $(FLEET_HOSTS)

fleet-testbed-down:
	bash testbed/netns.sh down
