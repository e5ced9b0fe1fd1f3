#include "aggregator/query/http_server.h"

#include <netdb.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"

namespace nodewatch::aggregator {
namespace {

const char* Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 503:
      return "Service Unavailable";
    default:
      return "Internal Server Error";
  }
}

std::string OpenSslError() {
  const unsigned long e = ERR_get_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

// One connection's byte stream, plain or TLS.
class Conn {
 public:
  Conn(int fd, SSL* ssl) : fd_(fd), ssl_(ssl) {}
  ~Conn() {
    if (ssl_ != nullptr) {
      if (established_) SSL_shutdown(ssl_);  // no close_notify after a failed handshake
      SSL_free(ssl_);
    }
    ERR_clear_error();  // leave nothing on this worker thread's error queue
    close(fd_);
  }
  bool Handshake() {
    established_ = SSL_accept(ssl_) == 1;
    return established_;
  }
  long Read(char* buf, size_t n) {
    if (ssl_ != nullptr) return SSL_read(ssl_, buf, static_cast<int>(n));
    return recv(fd_, buf, n, 0);
  }
  bool WriteAll(const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
      long n = ssl_ != nullptr
                   ? SSL_write(ssl_, data.data() + off, static_cast<int>(data.size() - off))
                   : send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }
  std::string PeerPem() {
    if (ssl_ == nullptr || SSL_get_verify_result(ssl_) != X509_V_OK) return "";
    X509* cert = SSL_get1_peer_certificate(ssl_);
    if (cert == nullptr) return "";
    BIO* bio = BIO_new(BIO_s_mem());
    std::string pem;
    if (PEM_write_bio_X509(bio, cert) == 1) {
      char* data = nullptr;
      long len = BIO_get_mem_data(bio, &data);
      if (len > 0) pem.assign(data, static_cast<size_t>(len));
    }
    BIO_free(bio);
    X509_free(cert);
    return pem;
  }

 private:
  int fd_;
  SSL* ssl_;
  bool established_ = false;
};

std::map<std::string, std::string> ParseQuery(const std::string& query) {
  std::map<std::string, std::string> out;
  for (absl::string_view part : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    std::vector<std::string> kv = absl::StrSplit(part, absl::MaxSplits('=', 1));
    out[UrlDecode(kv[0])] = kv.size() > 1 ? UrlDecode(kv[1]) : "";
  }
  return out;
}

}  // namespace

std::string UrlDecode(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && absl::ascii_isxdigit(s[i + 1]) &&
               absl::ascii_isxdigit(s[i + 2])) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

absl::StatusOr<HttpRequest> ParseRequestHead(const std::string& head) {
  std::vector<std::string> lines = absl::StrSplit(head, "\r\n");
  std::vector<std::string> request_line = absl::StrSplit(lines[0], ' ');
  if (request_line.size() != 3 || !absl::StartsWith(request_line[2], "HTTP/1.") ||
      request_line[1].empty() || request_line[1][0] != '/') {
    return absl::InvalidArgumentError("malformed request line");
  }
  HttpRequest request;
  request.method = request_line[0];
  const std::string& target = request_line[1];
  const size_t q = target.find('?');
  request.path = UrlDecode(target.substr(0, q));
  if (q != std::string::npos) request.params = ParseQuery(target.substr(q + 1));
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t c = lines[i].find(':');
    if (c == std::string::npos) return absl::InvalidArgumentError("malformed header line");
    if (absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(lines[i].substr(0, c)),
                               "authorization")) {
      request.authorization = std::string(absl::StripAsciiWhitespace(lines[i].substr(c + 1)));
    }
  }
  return request;
}

HttpServer::HttpServer(HttpServerOptions options, Handler handler)
    : options_(std::move(options)), handler_(std::move(handler)) {}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options,
                                                              Handler handler) {
  std::unique_ptr<HttpServer> server(new HttpServer(options, std::move(handler)));
  auto bad = [&](const std::string& why) {
    return absl::UnavailableError(
        absl::StrCat("http-listen: cannot serve on '", options.listen, "': ", why));
  };
  // A client that goes away mid-write must not kill the process.
  std::signal(SIGPIPE, SIG_IGN);
  if (options.tls) {
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    server->ssl_ctx_ = ctx;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(ctx, options.tls->cert_file.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, options.tls->key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1 ||
        SSL_CTX_load_verify_locations(ctx, options.tls->ca_file.c_str(), nullptr) != 1) {
      return bad(absl::StrCat("TLS set-up: ", OpenSslError()));
    }
    // Client certificates are asked for and verified, not required: a bearer token also works.
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  }
  const size_t colon = options.listen.rfind(':');
  if (colon == std::string::npos) return bad("not host:port");
  std::string host = options.listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  const std::string port = options.listen.substr(colon + 1);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found);
      rc != 0) {
    return bad(gai_strerror(rc));
  }
  int fd = socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  const bool bound =
      fd >= 0 && bind(fd, found->ai_addr, found->ai_addrlen) == 0 && listen(fd, 128) == 0;
  freeaddrinfo(found);
  if (!bound) {
    const std::string why = strerror(errno);
    if (fd >= 0) close(fd);
    return bad(why);
  }
  server->listen_fd_ = fd;
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  server->port_ =
      ntohs(addr.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                                       : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  server->workers_ = std::make_unique<BoundedExecutor>(options.threads, options.max_queued);
  server->acceptor_ = std::thread([s = server.get()] { s->AcceptLoop(); });
  return server;
}

HttpServer::~HttpServer() {
  stopping_ = true;
  if (acceptor_.joinable()) acceptor_.join();
  ShutDownConnections(/*all=*/true);  // wake workers blocked on slow clients
  workers_.reset();                   // finishes the connections in hand
  if (listen_fd_ >= 0) close(listen_fd_);
  if (ssl_ctx_ != nullptr) SSL_CTX_free(static_cast<SSL_CTX*>(ssl_ctx_));
}

void HttpServer::ShutDownConnections(bool all) {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(conns_mu_);
  for (auto& [fd, deadline] : conns_) {
    if (!all && now < deadline) continue;
    // Wakes the worker blocked in read or write; the worker closes the descriptor.
    shutdown(fd, SHUT_RDWR);
    deadline = std::chrono::steady_clock::time_point::max();
  }
}

void HttpServer::AcceptLoop() {
  while (!stopping_) {
    ShutDownConnections(/*all=*/false);
    pollfd p{.fd = listen_fd_, .events = POLLIN};
    if (poll(&p, 1, 200) <= 0) continue;
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    int fd = accept4(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_CLOEXEC);
    if (fd < 0) {
      // Out of descriptors: the pending connection stays queued; do not spin on it.
      if (errno == EMFILE || errno == ENFILE)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    timeval tv{.tv_sec = options_.io_timeout_ms / 1000,
               .tv_usec = (options_.io_timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    char host[NI_MAXHOST] = "?";
    char serv[NI_MAXSERV] = "?";
    getnameinfo(reinterpret_cast<sockaddr*>(&addr), len, host, sizeof host, serv, sizeof serv,
                NI_NUMERICHOST | NI_NUMERICSERV);
    std::string peer = absl::StrCat(host, ":", serv);
    if (!workers_->TrySubmit([this, fd, peer] { Serve(fd, peer); })) {
      ++refused_;
      close(fd);
    }
  }
}

void HttpServer::Serve(int fd, const std::string& peer) {
  if (stopping_) {  // queued while the server was stopping
    close(fd);
    return;
  }
  {
    // The whole exchange (handshake, request, answer) must fit in io_timeout_ms: a client that
    // trickles bytes is cut off by the acceptor's sweep, not only when one read stalls.
    std::lock_guard<std::mutex> lock(conns_mu_);
    conns_[fd] =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.io_timeout_ms);
  }
  struct Unregister {
    HttpServer* self;
    int fd;
    ~Unregister() {
      std::lock_guard<std::mutex> lock(self->conns_mu_);
      self->conns_.erase(fd);
    }
  };
  SSL* ssl = nullptr;
  if (ssl_ctx_ != nullptr) {
    ssl = SSL_new(static_cast<SSL_CTX*>(ssl_ctx_));
    SSL_set_fd(ssl, fd);
  }
  Conn conn(fd, ssl);  // closes fd after Unregister (declared later, destroyed first) ran
  Unregister unregister{this, fd};
  if (ssl != nullptr && !conn.Handshake()) {
    ++refused_;
    GetLogger("agg.http")->debug("TLS handshake with {} failed: {}", peer, OpenSslError());
    return;
  }
  auto respond = [&](const HttpResponse& r) {
    conn.WriteAll(
        absl::StrCat("HTTP/1.1 ", r.status, " ", Reason(r.status),
                     "\r\nContent-Type: application/json\r\nContent-Length: ", r.body.size() + 1,
                     "\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n", r.body, "\n"));
  };
  std::string head;
  char buf[4096];
  while (head.find("\r\n\r\n") == std::string::npos) {
    if (head.size() > options_.max_header_bytes) {
      ++refused_;
      respond({431, R"({"error":"request header too large","code":"INVALID_ARGUMENT"})"});
      return;
    }
    long n = conn.Read(buf, sizeof buf);
    if (n <= 0) {
      ++refused_;
      return;  // closed or timed out before a whole request arrived
    }
    head.append(buf, static_cast<size_t>(n));
  }
  head.resize(head.find("\r\n\r\n"));
  auto parsed = ParseRequestHead(head);
  if (!parsed.ok()) {
    ++refused_;
    respond({400, absl::StrCat(R"({"error":")", parsed.status().message(),
                               R"(","code":"INVALID_ARGUMENT"})")});
    return;
  }
  HttpRequest& request = *parsed;
  request.peer = peer;
  request.peer_certificate_pem = conn.PeerPem();
  respond(handler_(request));
}

}  // namespace nodewatch::aggregator
