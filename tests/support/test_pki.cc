#include "tests/support/test_pki.h"

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <filesystem>
#include <stdexcept>

namespace nodewatch::testing {
namespace {

void Check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("TestPki: ") + what + " failed");
}

EVP_PKEY* NewKey() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  Check(key != nullptr, "EVP_EC_gen");
  return key;
}

void WritePem(const std::string& path, X509* cert, EVP_PKEY* key) {
  FILE* f = fopen(path.c_str(), "w");
  Check(f != nullptr, "fopen");
  bool ok = cert != nullptr ? PEM_write_X509(f, cert) == 1
                            : PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
  fclose(f);
  Check(ok, "PEM write");
}

void AddExt(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  Check(ext != nullptr, "X509V3_EXT_conf_nid");
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

X509* MakeCert(const CertSpec& spec, EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key,
               bool is_ca) {
  static long serial = 1000;
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), ++serial);
  X509_gmtime_adj(X509_getm_notBefore(cert), spec.not_before_offset_s);
  X509_gmtime_adj(X509_getm_notAfter(cert), spec.not_after_offset_s);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  for (const auto& o : spec.orgs) {
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>(o.c_str()), -1, -1, 0);
  }
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(spec.cn.c_str()), -1, -1, 0);
  X509* signer = issuer != nullptr ? issuer : cert;
  X509_set_issuer_name(cert, X509_get_subject_name(signer));
  if (is_ca) {
    AddExt(cert, signer, NID_basic_constraints, "critical,CA:TRUE");
    AddExt(cert, signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    AddExt(cert, signer, NID_basic_constraints, "critical,CA:FALSE");
    AddExt(cert, signer, NID_key_usage, "critical,digitalSignature");
    AddExt(cert, signer, NID_ext_key_usage, "serverAuth,clientAuth");
    std::string san;
    for (const auto& d : spec.dns) san += (san.empty() ? "" : ",") + std::string("DNS:") + d;
    for (const auto& ip : spec.ips) san += (san.empty() ? "" : ",") + std::string("IP:") + ip;
    if (!san.empty()) AddExt(cert, signer, NID_subject_alt_name, san);
  }
  AddExt(cert, signer, NID_subject_key_identifier, "hash");
  Check(X509_sign(cert, issuer_key != nullptr ? issuer_key : key, EVP_sha256()) > 0, "X509_sign");
  return cert;
}

}  // namespace

TestPki::TestPki(std::string dir, const std::string& ca_name) : dir_(std::move(dir)) {
  std::filesystem::create_directories(dir_);
  auto* key = NewKey();
  CertSpec spec{.cn = ca_name, .orgs = {"nodewatch tests"}, .not_after_offset_s = 7 * 86400};
  auto* cert = MakeCert(spec, key, nullptr, nullptr, /*is_ca=*/true);
  ca_key_ = key;
  ca_cert_ = cert;
  ca_file_ = dir_ + "/" + ca_name + ".crt";
  WritePem(ca_file_, cert, nullptr);
}

TestPki::~TestPki() {
  X509_free(static_cast<X509*>(ca_cert_));
  EVP_PKEY_free(static_cast<EVP_PKEY*>(ca_key_));
}

CertFiles TestPki::Issue(const std::string& name, const CertSpec& spec) {
  EVP_PKEY* key = NewKey();
  X509* cert = MakeCert(spec, key, static_cast<X509*>(ca_cert_), static_cast<EVP_PKEY*>(ca_key_),
                        /*is_ca=*/false);
  CertFiles files{dir_ + "/" + name + ".crt", dir_ + "/" + name + ".key"};
  WritePem(files.cert, cert, nullptr);
  WritePem(files.key, nullptr, key);
  X509_free(cert);
  EVP_PKEY_free(key);
  return files;
}

}  // namespace nodewatch::testing
