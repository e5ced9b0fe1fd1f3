#include "common/tls.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/file_util.h"
#include "tests/support/process.h"
#include "tests/support/test_pki.h"

namespace nodewatch {
namespace {

using ::testing::HasSubstr;

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override { pki_ = std::make_unique<testing::TestPki>(testing::MakeTempDir("tls")); }
  PeerIdentity IdentityOf(const testing::CertSpec& spec) {
    auto files = pki_->Issue("c" + std::to_string(++n_), spec);
    auto pem = ReadFileToString(files.cert);
    EXPECT_TRUE(pem.ok());
    auto id = ParseCertificateIdentity(*pem);
    EXPECT_TRUE(id.ok()) << id.status();
    return *id;
  }
  std::unique_ptr<testing::TestPki> pki_;
  int n_ = 0;
};

TEST_F(TlsTest, KubeletStyleNodeCertificateNamesTheNode) {
  auto id = IdentityOf({.cn = "system:node:worker-7", .orgs = {"system:nodes"}});
  EXPECT_EQ(id.common_name, "system:node:worker-7");
  EXPECT_EQ(*NodeNameFromIdentity(id), "worker-7");
}

TEST_F(TlsTest, OtherIdentitiesAreNotNodes) {
  auto no_group = IdentityOf({.cn = "system:node:worker-7"});
  EXPECT_EQ(NodeNameFromIdentity(no_group).status().code(), absl::StatusCode::kPermissionDenied);
  auto wrong_cn = IdentityOf({.cn = "worker-7", .orgs = {"system:nodes"}});
  EXPECT_THAT(NodeNameFromIdentity(wrong_cn).status().message(), HasSubstr("not a node identity"));
  auto empty = IdentityOf({.cn = "system:node:", .orgs = {"system:nodes"}});
  EXPECT_FALSE(NodeNameFromIdentity(empty).ok());
  auto op = IdentityOf({.cn = "alice", .orgs = {"nodewatch:operators"}});
  EXPECT_TRUE(op.HasOrganization(kOperatorGroup));
  EXPECT_FALSE(NodeNameFromIdentity(op).ok());
}

TEST_F(TlsTest, GarbageIsNotACertificate) {
  EXPECT_EQ(ParseCertificateIdentity("not pem").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(TlsTest, MissingFilesAreNamed) {
  auto creds = MakeServerCredentials({"/nope/ca.crt", "/nope/a.crt", "/nope/a.key"},
                                     ClientCertPolicy::kRequireAndVerify);
  EXPECT_THAT(creds.status().message(), HasSubstr("tls-ca '/nope/ca.crt'"));
  auto client = MakeChannelCredentials({pki_->ca_file(), "/nope/c.crt", "/nope/c.key"});
  EXPECT_THAT(client.status().message(), HasSubstr("tls-cert"));
}

}  // namespace
}  // namespace nodewatch
