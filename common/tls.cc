#include "common/tls.h"

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_credentials_options.h"

namespace nodewatch {
namespace {

constexpr unsigned kRefreshSeconds = 60;

absl::Status CheckReadable(const std::string& what, const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError(absl::StrCat(what, " is not set"));
  if (access(path.c_str(), R_OK) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, " '", path, "' is not readable"));
  }
  return absl::OkStatus();
}

}  // namespace

bool PeerIdentity::HasOrganization(const std::string& o) const {
  return std::find(organizations.begin(), organizations.end(), o) != organizations.end();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsFiles& files, ClientCertPolicy policy) {
  for (auto [what, path] : {std::pair{"tls-ca", files.ca_file}, {"tls-cert", files.cert_file},
                            {"tls-key", files.key_file}}) {
    if (auto s = CheckReadable(what, path); !s.ok()) return s;
  }
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      files.key_file, files.cert_file, files.ca_file, kRefreshSeconds);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(policy == ClientCertPolicy::kRequireAndVerify
                                    ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                    : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  return grpc::experimental::TlsServerCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const TlsFiles& files) {
  if (auto s = CheckReadable("tls-ca", files.ca_file); !s.ok()) return s;
  std::shared_ptr<grpc::experimental::CertificateProviderInterface> provider;
  bool with_identity = !files.cert_file.empty() || !files.key_file.empty();
  if (with_identity) {
    if (auto s = CheckReadable("tls-cert", files.cert_file); !s.ok()) return s;
    if (auto s = CheckReadable("tls-key", files.key_file); !s.ok()) return s;
    provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
        files.key_file, files.cert_file, files.ca_file, kRefreshSeconds);
  } else {
    provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
        files.ca_file, kRefreshSeconds);
  }
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(provider);
  options.watch_root_certs();
  if (with_identity) options.watch_identity_key_cert_pairs();
  options.set_verify_server_certs(true);
  return grpc::experimental::TlsCredentials(options);
}

absl::StatusOr<PeerIdentity> ParseCertificateIdentity(const std::string& pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())),
                                                &BIO_free);
  if (!bio) return absl::InternalError("BIO_new_mem_buf failed");
  std::unique_ptr<X509, decltype(&X509_free)> cert(
      PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr), &X509_free);
  if (!cert) return absl::InvalidArgumentError("peer certificate is not valid PEM");
  X509_NAME* subject = X509_get_subject_name(cert.get());
  PeerIdentity id;
  auto text_of = [](X509_NAME_ENTRY* entry) {
    ASN1_STRING* data = X509_NAME_ENTRY_get_data(entry);
    unsigned char* utf8 = nullptr;
    int len = ASN1_STRING_to_UTF8(&utf8, data);
    std::string out;
    if (len >= 0) out.assign(reinterpret_cast<char*>(utf8), static_cast<size_t>(len));
    OPENSSL_free(utf8);
    return out;
  };
  int cn_count = 0;
  for (int i = 0; i < X509_NAME_entry_count(subject); ++i) {
    X509_NAME_ENTRY* entry = X509_NAME_get_entry(subject, i);
    int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(entry));
    if (nid == NID_commonName) {
      id.common_name = text_of(entry);
      ++cn_count;
    } else if (nid == NID_organizationName) {
      id.organizations.push_back(text_of(entry));
    }
  }
  // Two CNs would make "the" name ambiguous; refuse rather than pick one.
  if (cn_count > 1) return absl::PermissionDeniedError("certificate has more than one CN");
  return id;
}

absl::StatusOr<std::string> NodeNameFromIdentity(const PeerIdentity& id) {
  const std::string prefix = kNodeUserPrefix;
  if (!id.HasOrganization(kNodeGroup) || id.common_name.rfind(prefix, 0) != 0 ||
      id.common_name.size() == prefix.size()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "certificate CN '", id.common_name, "' is not a node identity (want CN system:node:<name>, O ",
        kNodeGroup, ")"));
  }
  return id.common_name.substr(prefix.size());
}

}  // namespace nodewatch
