# nodewatch entry points. `make demo` and `make test` are all a newcomer needs: each installs the
# Debian packages that are missing, configures and builds, then runs.
BUILD_DIR ?= build
ASAN_BUILD_DIR ?= build-asan
JOBS ?= $(shell nproc)
BENCH ?=
CMAKE_FLAGS ?=

FUZZ_BUILD_DIR ?= build-fuzz
FUZZ_SECONDS ?= 60

.PHONY: deps build demo test test-asan bench fuzz format clean talos-extension image

deps:
	@bash scripts/install-deps.sh

$(BUILD_DIR)/build.ninja: | deps
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)

build: deps $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS)

demo: build
	@bash scripts/demo.sh $(BUILD_DIR)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j 1 --timeout 900

# Unit and kernel (eBPF) tests again under AddressSanitizer + UndefinedBehaviorSanitizer (CI runs
# this after `make test`).
test-asan: deps
	cmake -S . -B $(ASAN_BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DNODEWATCH_SANITIZE=ON
	cmake --build $(ASAN_BUILD_DIR) -j $(JOBS) --target unit_tests fake_kube_api_tests kernel_tests \
	  agent_message_fuzz spool_segment_fuzz config_yaml_fuzz kube_response_fuzz http_request_fuzz
	cd $(ASAN_BUILD_DIR) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ctest --output-on-failure -L 'unit|kernel'

# The agent as a Talos system extension: OCI layout + archive under $(BUILD_DIR)/talos-extension.
talos-extension: build
	bash scripts/build-talos-extension.sh $(BUILD_DIR)/bin/nodewatch-agent $(BUILD_DIR)/talos-extension

# The aggregator's OCI image (self-contained rootfs, non-root user) under $(BUILD_DIR)/image.
image: build
	bash scripts/build-image.sh $(BUILD_DIR)/bin/nodewatch-aggregator $(BUILD_DIR)/image

bench: build
	@bash scripts/bench.sh $(BUILD_DIR) "$(BENCH)"

# libFuzzer (clang) over every parser of untrusted input, FUZZ_SECONDS each, from the seed corpora.
fuzz: deps
	CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DNODEWATCH_FUZZ=ON -DNODEWATCH_SANITIZE=ON -DNODEWATCH_WERROR=OFF
	cmake --build $(FUZZ_BUILD_DIR) -j $(JOBS) --target agent_message_fuzz spool_segment_fuzz config_yaml_fuzz \
	  kube_response_fuzz http_request_fuzz
	for t in agent_message spool_segment config_yaml kube_response http_request; do \
	  mkdir -p $(FUZZ_BUILD_DIR)/corpus/$$t && \
	  $(FUZZ_BUILD_DIR)/bin/$${t}_fuzz -max_total_time=$(FUZZ_SECONDS) \
	    $(FUZZ_BUILD_DIR)/corpus/$$t fuzz/corpus/$$t || exit 1; \
	done

format:
	git ls-files '*.cc' '*.h' | grep -v '^bpf/' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR) $(ASAN_BUILD_DIR) $(FUZZ_BUILD_DIR)
