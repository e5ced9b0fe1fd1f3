// Fuzz target: arbitrary bytes as an agent or aggregator config file or a price table. Loading
// must return OK or a clear error; validation must never crash.
#include <cstdint>
#include <string>

#include "agent/config/agent_config.h"
#include "aggregator/config/aggregator_config.h"
#include "aggregator/cost/price_table.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  {
    nodewatch::agent::AgentConfig config;
    nodewatch::OptionSet options("agent", "fuzz");
    nodewatch::agent::RegisterAgentOptions(options, &config);
    if (options.ApplyYaml(text, "fuzz.yaml").ok())
      (void)nodewatch::agent::ValidateAgentConfig(config);
  }
  {
    nodewatch::aggregator::AggregatorConfig config;
    nodewatch::OptionSet options("aggregator", "fuzz");
    nodewatch::aggregator::RegisterAggregatorOptions(options, &config);
    if (options.ApplyYaml(text, "fuzz.yaml").ok()) {
      (void)nodewatch::aggregator::ValidateAggregatorConfig(config);
    }
  }
  (void)nodewatch::aggregator::PriceTable::Parse(text, "fuzz.yaml");
  return 0;
}
