# nodewatch entry points. `make demo` and `make test` are all a newcomer needs: each installs the
# Debian packages that are missing, configures and builds, then runs.
BUILD_DIR ?= build
ASAN_BUILD_DIR ?= build-asan
JOBS ?= $(shell nproc)
BENCH ?=
CMAKE_FLAGS ?=

.PHONY: deps build demo test test-asan bench format clean

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

# Unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer (CI runs this after `make test`).
test-asan: deps
	cmake -S . -B $(ASAN_BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DNODEWATCH_SANITIZE=ON
	cmake --build $(ASAN_BUILD_DIR) -j $(JOBS) --target unit_tests
	cd $(ASAN_BUILD_DIR) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ctest --output-on-failure -L unit

bench: build
	@bash scripts/bench.sh $(BUILD_DIR) "$(BENCH)"

format:
	git ls-files '*.cc' '*.h' | grep -v '^bpf/' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR) $(ASAN_BUILD_DIR)
