// nodewatch-metadata-sim: the cloud metadata simulator as a process, for `make demo` and manual
// testing. Script it over HTTP:
//   curl -X POST 'http://127.0.0.1:PORT/_sim/aws/spot?action=terminate'
//   curl -X POST 'http://127.0.0.1:PORT/_sim/gcp/preempted?value=TRUE'
//   curl -X POST 'http://127.0.0.1:PORT/_sim/azure/event?type=Preempt&resources=nodewatch-vmss_3'
//   curl -X POST 'http://127.0.0.1:PORT/_sim/fault?path=/latest/meta-data/spot&kind=malformed&count=3'
//   curl 'http://127.0.0.1:PORT/_sim/state'
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <unistd.h>

#include "tests/support/metadata_simulator.h"

namespace {
volatile std::sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }
}  // namespace

int main(int argc, char** argv) {
  nodewatch::testing::MetadataSimulator::Options options;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--cloud")) options.cloud = argv[i + 1];
    if (!std::strcmp(argv[i], "--port")) options.port = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--azure-vm-name")) options.azure_vm_name = argv[i + 1];
  }
  if (options.cloud != "aws" && options.cloud != "gcp" && options.cloud != "azure" &&
      options.cloud != "digitalocean") {
    std::fprintf(stderr, "usage: nodewatch-metadata-sim --cloud aws|gcp|azure|digitalocean [--port N]\n");
    return 2;
  }
  nodewatch::testing::MetadataSimulator sim(options);
  if (!sim.Start()) {
    std::fprintf(stderr, "nodewatch-metadata-sim: cannot listen on port %d\n", options.port);
    return 1;
  }
  std::printf("nodewatch-metadata-sim: %s metadata on %s\n", options.cloud.c_str(), sim.url().c_str());
  std::fflush(stdout);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  while (g_stop == 0) pause();
  sim.Stop();
  return 0;
}
