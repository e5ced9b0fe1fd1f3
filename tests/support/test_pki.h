// TestPki: a throwaway certificate authority generated with OpenSSL for tests. Everything is
// ECDSA P-256 and written as PEM files under a directory the test owns.
//
//   TestPki pki(dir);
//   auto server = pki.Issue("server", {.cn = "nodewatch-aggregator", .dns = {"localhost"},
//                                      .ips = {"127.0.0.1"}});
//   auto node = pki.Issue("node-a", {.cn = "system:node:a", .orgs = {"system:nodes"}});
#pragma once

#include <string>
#include <vector>

namespace nodewatch::testing {

struct CertSpec {
  std::string cn;
  std::vector<std::string> orgs;
  std::vector<std::string> dns;
  std::vector<std::string> ips;
  long not_before_offset_s = -3600;  // relative to now
  long not_after_offset_s = 86400;
};

struct CertFiles {
  std::string cert;
  std::string key;
};

class TestPki {
 public:
  // Creates a CA named `ca_name` under `dir` (created if missing). Aborts the test on failure.
  explicit TestPki(std::string dir, const std::string& ca_name = "nodewatch-test-ca");
  ~TestPki();
  TestPki(const TestPki&) = delete;
  TestPki& operator=(const TestPki&) = delete;

  const std::string& ca_file() const { return ca_file_; }
  CertFiles Issue(const std::string& name, const CertSpec& spec);

 private:
  std::string dir_;
  std::string ca_file_;
  void* ca_key_ = nullptr;   // EVP_PKEY*
  void* ca_cert_ = nullptr;  // X509*
};

}  // namespace nodewatch::testing
