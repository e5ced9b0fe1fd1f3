// Shared set-up of the benchmarks: a test PKI and per-node TLS credentials that do not spawn a
// file-watcher thread each (thousands of simulated agents share one process).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "grpcpp/grpcpp.h"
#include "tests/support/test_pki.h"

namespace nodewatch::bench {

inline std::shared_ptr<grpc::ChannelCredentials> StaticCreds(const std::string& ca_file,
                                                             const testing::CertFiles& cert) {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = *ReadFileToString(ca_file);
  options.pem_cert_chain = *ReadFileToString(cert.cert);
  options.pem_private_key = *ReadFileToString(cert.key);
  return grpc::SslCredentials(options);
}

inline std::shared_ptr<grpc::Channel> AgentChannel(const std::string& address,
                                                   std::shared_ptr<grpc::ChannelCredentials> c) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // one connection per simulated agent
  args.SetSslTargetNameOverride("localhost");
  return grpc::CreateCustomChannel(address, std::move(c), args);
}

inline int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The p-quantile (0..1) of `v`, nearest rank; 0 for no samples.
inline double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

inline void PrintBench(const std::string& name, double value, const std::string& unit) {
  std::printf("BENCH %s %.6g %s\n", name.c_str(), value, unit.c_str());
  std::fflush(stdout);
}

}  // namespace nodewatch::bench
