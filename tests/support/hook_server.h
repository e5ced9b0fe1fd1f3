// HookServer: a local webhook receiver (civetweb) that fails the first `failures` POSTs with 503
// and records the bodies of the ones it accepts. For webhook tests and benchmarks.
#pragma once

#include <civetweb.h>

#include <atomic>
#include <mutex>
#include <string>
#include <vector>

namespace nodewatch::testing {
class HookServer {
 public:
  explicit HookServer(int failures) : failures_(failures) {
    const char* opts[] = {"listening_ports", "127.0.0.1:0", "num_threads", "2", nullptr};
    mg_callbacks callbacks{};
    ctx_ = mg_start(&callbacks, this, opts);
    mg_set_request_handler(ctx_, "/", &HookServer::Handle, this);
    mg_server_port ports[1];
    mg_get_server_ports(ctx_, 1, ports);
    port_ = ports[0].port;
  }
  ~HookServer() { mg_stop(ctx_); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hook"; }
  std::vector<std::string> bodies() {
    std::lock_guard<std::mutex> lock(mu_);
    return bodies_;
  }
  int attempts() const { return attempts_.load(); }

 private:
  static int Handle(mg_connection* conn, void* self_ptr) {
    auto* self = static_cast<HookServer*>(self_ptr);
    std::string body;
    char buf[4096];
    for (int n; (n = mg_read(conn, buf, sizeof buf)) > 0;) body.append(buf, static_cast<size_t>(n));
    const int attempt = ++self->attempts_;
    if (attempt <= self->failures_) {
      mg_printf(conn, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
      return 503;
    }
    {
      std::lock_guard<std::mutex> lock(self->mu_);
      self->bodies_.push_back(body);
    }
    mg_printf(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    return 200;
  }
  int failures_;
  std::atomic<int> attempts_{0};
  mg_context* ctx_ = nullptr;
  int port_ = 0;
  std::mutex mu_;
  std::vector<std::string> bodies_;
};

}  // namespace nodewatch::testing
