#include "server/http_server.h"

#include <chrono>
#include <ctime>

#include <httplib.h>

#include "core/error.h"

namespace hlwq::server {

struct HttpServer::Impl {
  HttpConfig cfg;
  ApiContext api;
  RequestQueue& queue;
  httplib::Server svr;
  int64_t started = std::time(nullptr);

  Impl(HttpConfig c, ApiContext a, RequestQueue& q) : cfg(std::move(c)), api(std::move(a)), queue(q) {}

  static void send_error(httplib::Response& res, const ApiError& e) {
    res.status = e.status;
    res.set_content(error_body(e), "application/json");
  }

  void completions(Endpoint ep, const httplib::Request& req, httplib::Response& res) {
    ApiRequest r;
    try {
      r = parse_request(ep, req.body, api);
    } catch (const ApiError& e) {
      return send_error(res, e);
    }
    auto ch = std::make_shared<Channel>();
    switch (queue.submit({r.gen, ch, Clock::now()})) {
      case RequestQueue::Submit::ok: break;
      case RequestQueue::Submit::full:
        return send_error(res, {503, "the server is at capacity: too many requests are waiting; retry later",
                                "server_error", "", "server_overloaded"});
      case RequestQueue::Submit::draining:
        return send_error(res, {503, "the server is shutting down", "server_error", "", "server_shutting_down"});
    }
    auto writer = std::make_shared<ResponseWriter>(r, api.model_name, int64_t(std::time(nullptr)));
    if (!r.stream) {
      for (;;) {
        std::optional<StreamEvent> ev = ch->next(std::chrono::hours(24));
        if (!ev) continue;
        if (ev->kind == StreamEvent::Kind::delta) writer->add(*ev);
        else if (ev->kind == StreamEvent::Kind::finish) return res.set_content(writer->full(*ev), "application/json");
        else return send_error(res, {500, "generation failed: " + ev->error, "server_error", "", ""});
      }
    }
    // Streaming: the first chunk goes out at once; then one chunk per event; [DONE] ends it.
    auto started_stream = std::make_shared<bool>(false);
    res.set_chunked_content_provider(
        "text/event-stream",
        [ch, writer, started_stream](size_t, httplib::DataSink& sink) {
          if (!*started_stream) {
            *started_stream = true;
            const std::string s = writer->sse_start();
            if (!s.empty() && !sink.write(s.data(), s.size())) return false;
          }
          std::optional<StreamEvent> ev = ch->next(std::chrono::milliseconds(100));
          if (!ev) return sink.is_writable();  // nothing yet: keep waiting while the client is there
          std::string out;
          bool end = false;
          if (ev->kind == StreamEvent::Kind::delta) {
            out = writer->sse_delta(*ev);
            if (out.empty()) return true;
          }
          else if (ev->kind == StreamEvent::Kind::finish) out = writer->sse_finish(*ev), end = true;
          else {
            out = "data: " + error_body({500, "generation failed: " + ev->error, "server_error", "", ""}) +
                  "\n\ndata: [DONE]\n\n";
            end = true;
          }
          if (!sink.write(out.data(), out.size())) return false;
          if (end) sink.done();
          return true;
        },
        [ch](bool) { ch->cancel(); });  // finished or not, the engine may forget it now
  }

  void routes() {
    svr.set_payload_max_length(cfg.max_body_bytes);
    svr.new_task_queue = [n = cfg.threads] { return new httplib::ThreadPool(size_t(n)); };
    svr.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (cfg.api_key.empty() || req.path.rfind("/v1/", 0) != 0) return httplib::Server::HandlerResponse::Unhandled;
      if (req.get_header_value("Authorization") == "Bearer " + cfg.api_key)
        return httplib::Server::HandlerResponse::Unhandled;
      send_error(res, {401,
                       req.has_header("Authorization") ? "Incorrect API key provided"
                                                       : "Missing API key: send 'Authorization: Bearer KEY'",
                       "invalid_request_error", "", "invalid_api_key"});
      return httplib::Server::HandlerResponse::Handled;
    });
    // Statuses httplib decides itself (404 route, 413 body too large, 400 bad request) get an OpenAI error body.
    svr.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      const std::string msg = res.status == 413   ? "the request body is larger than the server accepts"
                              : res.status == 404 ? "no route " + req.method + " " + req.path
                                                  : "bad request";
      send_error(res, {res.status, msg, "invalid_request_error", "", ""});
    });
    svr.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
      if (req.path.rfind("/v1/", 0) == 0) queue.record_response(res.status);
    });
    svr.Post("/v1/chat/completions",
             [this](const httplib::Request& q, httplib::Response& r) { completions(Endpoint::chat, q, r); });
    svr.Post("/v1/completions",
             [this](const httplib::Request& q, httplib::Response& r) { completions(Endpoint::completions, q, r); });
    svr.Get("/v1/models", [this](const httplib::Request&, httplib::Response& r) {
      r.set_content(models_body(api, started), "application/json");
    });
    svr.Get("/health", [](const httplib::Request&, httplib::Response& r) { r.status = 200; });
    svr.Get("/metrics", [this](const httplib::Request&, httplib::Response& r) {
      r.set_content(queue.render_metrics(), "text/plain; version=0.0.4");
    });
  }
};

HttpServer::HttpServer(HttpConfig cfg, ApiContext api, RequestQueue& queue)
    : impl_(std::make_unique<Impl>(std::move(cfg), std::move(api), queue)) {
  impl_->routes();
}

HttpServer::~HttpServer() = default;

int HttpServer::bind() {
  auto& c = impl_->cfg;
  int port = c.port;
  if (port == 0) port = impl_->svr.bind_to_any_port(c.host);
  else if (!impl_->svr.bind_to_port(c.host, port)) port = -1;
  HLWQ_CHECK(port > 0, "cannot listen on {}:{} (address in use, or not an address of this machine)", c.host, c.port);
  return port;
}

bool HttpServer::serve() { return impl_->svr.listen_after_bind(); }
void HttpServer::stop() { impl_->svr.stop(); }

}  // namespace hlwq::server
