// The JSON API's HTTP server on loopback (plain HTTP; TLS is covered by the integration test):
// requests parsed and answered, malformed heads refused, and clients that trickle bytes or send
// nothing cut off by the per-connection deadline so they cannot hold the workers.
#include "aggregator/query/http_server.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

namespace nodewatch::aggregator {
namespace {

using ::testing::HasSubstr;

int Connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  return fd;
}

std::string Exchange(int port, const std::string& request) {
  int fd = Connect(port);
  (void)!write(fd, request.data(), request.size());
  std::string out;
  char buf[1024];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  close(fd);
  return out;
}

std::unique_ptr<HttpServer> Start(size_t threads, int timeout_ms) {
  auto server = HttpServer::Start(
      {.listen = "127.0.0.1:0", .threads = threads, .io_timeout_ms = timeout_ms},
      [](const HttpRequest& r) {
        return HttpResponse{200, "{\"path\":\"" + r.path + "\",\"since\":\"" +
                                     (r.params.count("since") ? r.params.at("since") : "") +
                                     "\",\"auth\":\"" + r.authorization + "\"}"};
      });
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

TEST(HttpServer, AnswersParsedRequestsAndRefusesMalformedOnes) {
  auto server = Start(2, 2'000);
  ASSERT_NE(server, nullptr);
  std::string ok = Exchange(server->port(),
                            "GET /api/v1/a%20b?since=7d&x HTTP/1.1\r\nHost: x\r\n"
                            "authorization:  Bearer t0k3n \r\n\r\n");
  EXPECT_THAT(ok, HasSubstr("HTTP/1.1 200 OK"));
  EXPECT_THAT(ok, HasSubstr(R"({"path":"/api/v1/a b","since":"7d","auth":"Bearer t0k3n"})"));
  EXPECT_THAT(Exchange(server->port(), "BLAH\r\n\r\n"), HasSubstr("HTTP/1.1 400"));
  EXPECT_THAT(Exchange(server->port(), "GET / HTTP/1.1\r\nno colon here\r\n\r\n"),
              HasSubstr("HTTP/1.1 400"));
  EXPECT_THAT(Exchange(server->port(), "GET / HTTP/1.1\r\nX: " + std::string(40'000, 'a')),
              HasSubstr("HTTP/1.1 431"));
}

TEST(HttpServer, ClientsThatTrickleOrStallAreCutOffAtTheDeadline) {
  auto server = Start(1, 500);  // one worker: a stalled client would block everyone
  ASSERT_NE(server, nullptr);
  const int silent = Connect(server->port());
  std::thread trickler([port = server->port()] {
    int fd = Connect(port);
    // One byte every 100 ms never completes a request, and never stalls a single read long.
    for (int i = 0; i < 30; ++i) {
      if (write(fd, "G", 1) != 1) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    close(fd);
  });
  const auto start = std::chrono::steady_clock::now();
  std::string ok = Exchange(server->port(), "GET /x HTTP/1.1\r\n\r\n");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_THAT(ok, HasSubstr("HTTP/1.1 200 OK"));
  EXPECT_LT(seconds, 2.5) << "served only after the stalled clients were cut off";
  trickler.join();
  close(silent);
  EXPECT_GE(server->refused(), 2u);
  // Destruction does not wait for a client that is still connected and silent.
  const int lingering = Connect(server->port());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const auto stop = std::chrono::steady_clock::now();
  server.reset();
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - stop).count(), 1.0);
  close(lingering);
}

}  // namespace
}  // namespace nodewatch::aggregator
