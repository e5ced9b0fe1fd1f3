// mTLS credentials for every gRPC listener and channel. Key, certificate and CA files are watched
// (grpc FileWatcherCertificateProvider) and re-read every minute, so a rotated Kubernetes Secret
// volume (atomic symlink swap) takes effect without a restart.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"

namespace nodewatch {

struct TlsFiles {
  std::string ca_file;    // PEM bundle of CAs trusted for the peer
  std::string cert_file;  // PEM certificate chain of this process
  std::string key_file;   // PEM private key of cert_file
};

enum class ClientCertPolicy {
  kRequireAndVerify,  // agents: no verified certificate, no connection
  kRequestAndVerify,  // query API: a certificate is optional (bearer token instead) but verified
};

// Fails if a file is missing or unreadable, naming it; certificate content errors surface at the
// first handshake and are logged by gRPC.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsFiles& files, ClientCertPolicy policy);

// cert_file/key_file may be empty for a client without identity (bearer-token operators).
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const TlsFiles& files);

// Who is on the other end of a verified TLS connection.
struct PeerIdentity {
  std::string common_name;
  std::vector<std::string> organizations;
  bool HasOrganization(const std::string& o) const;
};

// Parses the subject of a PEM certificate (as gRPC exposes it in the AuthContext property
// "x509_pem_cert").
absl::StatusOr<PeerIdentity> ParseCertificateIdentity(const std::string& pem);

// Node certificates follow the kubelet convention: CN "system:node:<name>", O "system:nodes".
// Returns the node name, or PermissionDenied when the identity is not a node's.
absl::StatusOr<std::string> NodeNameFromIdentity(const PeerIdentity& id);

inline constexpr char kNodeGroup[] = "system:nodes";
inline constexpr char kNodeUserPrefix[] = "system:node:";
inline constexpr char kOperatorGroup[] = "nodewatch:operators";

}  // namespace nodewatch
