// Runs a fuzz target without libFuzzer (gcc builds, ctest): every file in the given corpus
// directories, then a fixed number of deterministic pseudo-random mutations of them. With clang
// and -DNODEWATCH_FUZZ=ON the targets link libFuzzer instead and explore for real.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  std::vector<std::string> inputs;
  for (int i = 1; i < argc; ++i) {
    for (const auto& entry : std::filesystem::recursive_directory_iterator(argv[i])) {
      if (!entry.is_regular_file()) continue;
      std::ifstream in(entry.path(), std::ios::binary);
      inputs.emplace_back((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    }
  }
  if (inputs.empty()) inputs.emplace_back();
  for (const auto& input : inputs) {
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
  }
  std::mt19937 rng(20261122);
  size_t runs = 0;
  for (int round = 0; round < 2000; ++round) {
    std::string input = inputs[rng() % inputs.size()];
    int edits = 1 + static_cast<int>(rng() % 8);
    for (int e = 0; e < edits; ++e) {
      switch (rng() % 4) {
        case 0:
          if (!input.empty()) input[rng() % input.size()] = static_cast<char>(rng());
          break;
        case 1:
          input.insert(input.begin() + static_cast<long>(input.empty() ? 0 : rng() % input.size()),
                       static_cast<char>(rng()));
          break;
        case 2:
          if (!input.empty()) input.erase(rng() % input.size(), 1 + rng() % 16);
          break;
        default:
          input.resize(rng() % (input.size() + 64));
      }
    }
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
    ++runs;
  }
  std::printf("replayed %zu corpus inputs and %zu mutations\n", inputs.size(), runs);
  return 0;
}
