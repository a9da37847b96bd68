// The HTTP side of `hlwq serve` (cpp-httplib): routes, the API key check, the body size limit, server-sent-event
// streaming and client disconnects (a stream whose client is gone cancels its request's channel). Handler threads
// only parse, submit to the RequestQueue and copy events out of their Channel; they never touch the model.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "server/openai_api.h"
#include "server/queue.h"

namespace hlwq::server {

struct HttpConfig {
  std::string host = "127.0.0.1";
  int port = 8000;  // 0: any free port (the bound one is returned by bind())
  std::string api_key;  // empty: no key required
  size_t max_body_bytes = size_t(8) << 20;
  int threads = 32;  // connections served at once (each streaming client holds one)
};

class HttpServer {
 public:
  HttpServer(HttpConfig cfg, ApiContext api, RequestQueue& queue);
  ~HttpServer();
  // Binds the listening socket; returns the port (throws hlwq::Error when it cannot bind).
  int bind();
  // Serves until stop(); returns false when serving failed.
  bool serve();
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hlwq::server
