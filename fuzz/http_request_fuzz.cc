// Fuzz target: arbitrary bytes as the head of an operator's HTTP request (the JSON API's parser of
// untrusted network input). Parsing must return a request or a clear error, never crash.
#include <cstdint>
#include <string>

#include "aggregator/query/http_server.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string head(reinterpret_cast<const char*>(data), size);
  auto request = nodewatch::aggregator::ParseRequestHead(head);
  if (request.ok()) {
    for (const auto& [key, value] : request->params) (void)nodewatch::aggregator::UrlDecode(value);
  }
  (void)nodewatch::aggregator::UrlDecode(head);
  return 0;
}
