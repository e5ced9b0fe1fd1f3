// Shared set-up of the benchmarks: a test PKI and per-node TLS credentials that do not spawn a
// file-watcher thread each (thousands of simulated agents share one process).
#pragma once

#include <cstdio>
#include <memory>
#include <string>

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

inline void PrintBench(const std::string& name, double value, const std::string& unit) {
  std::printf("BENCH %s %.6g %s\n", name.c_str(), value, unit.c_str());
  std::fflush(stdout);
}

}  // namespace nodewatch::bench
