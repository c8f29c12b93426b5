#include "actors/admin.hpp"
#include "actors/errors.hpp"

#include "admin/api.hpp"
#include "admin/dashboard.hpp"
#include "common/clock.hpp"
#include "common/log.hpp"
#include "common/metrics.hpp"
#include "config/defaults.hpp"
#include "nodecoord/version.hpp"
#include "storage/database.hpp"
#include "storage/size_sampler.hpp"
#include "storage/snapshot.hpp"

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <httplib.h>
#include <openssl/ssl.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <memory>
#include <optional>
#include <thread>

namespace nodecoord {

namespace {

using std::chrono::milliseconds;

/// The API's view of the daemon: one blocking request per call, from an HTTP thread, with a
/// timeout, so a slow actor costs one answer (503 or a part marked missing), never a hang.
class actor_backend final : public admin::backend {
public:
  actor_backend(caf::actor_system& sys, const admin_options& o)
    : sys_(sys), storage_(o.storage), registry_(o.registry), tracker_(o.tracker), scheduler_(o.scheduler) {}

  storage_status storage_state() override { return ask<storage_status>(storage_, "storage", part, status_atom::value); }
  bool ping() override { return ask<bool>(storage_, "storage", part, storage::ping{}); }
  storage::count_summary::result_type counts() override { return op(storage::count_summary{}, part); }
  storage::database_size::result_type sizes() override {
    if (!sampler_)
      return op(storage::database_size{}, part);
    if (auto s = sampler_->latest())
      return s->sizes;
    // Before the sampler's first answer (just after startup), measure on this thread once.
    if (sampler_->sample_now())
      if (auto s = sampler_->latest())
        return s->sizes;
    auto why = sampler_->last_error();
    throw admin::unavailable("database size: " + (why.empty() ? std::string("not measured yet") : why));
  }
  void use_sampler(storage::size_sampler* s) { sampler_ = s; }
  void use_reader(storage::storage_url url) { reader_url_ = std::move(url); }
  storage::instance_list::result_type instances() override { return op(storage::instance_list{}, part); }
  storage::node_list::result_type nodes(const storage::node_list& o) override { return op(o, part); }
  storage::node_lookup_by_name::result_type node(const std::string& name) override {
    return op(storage::node_lookup_by_name{name}, part);
  }
  storage::node_create::result_type create_node(const storage::node_create& o) override { return op(o, write); }
  storage::node_disable::result_type disable_node(const storage::node_disable& o) override { return op(o, write); }
  storage::node_enable::result_type enable_node(const storage::node_enable& o) override { return op(o, write); }
  storage::node_set_key::result_type set_key(const storage::node_set_key& o) override { return op(o, write); }
  storage::attempt_list::result_type attempts(const storage::attempt_list& o) override { return op(o, write); }
  storage::attempt_get::result_type attempt(const std::string& id) override {
    return op(storage::attempt_get{id}, part);
  }
  storage::logs_get::result_type logs(const storage::logs_get& o) override { return op(o, part); }
  storage::attempt_requeue::result_type requeue(const storage::attempt_requeue& o) override { return op(o, write); }
  storage::bulk_action::result_type bulk(const storage::bulk_action& o) override { return op(o, write); }
  int64_t append_audit(const storage::audit_append& o) override { return op(o, write); }
  storage::audit_query::result_type audit(const storage::audit_query& o) override { return op(o, part); }
  storage::job_query::result_type jobs(const storage::job_query& o) override { return op(o, write); }
  storage::jobs_prune::result_type prune(const storage::jobs_prune& o) override { return op(o, write); }
  storage::job_insert::result_type insert_job(const storage::job_insert& o) override { return op(o, write); }
  storage::job_update::result_type update_job(const storage::job_update& o) override { return op(o, write); }
  storage::bundle::counts export_bundle(const storage::bundle::export_file& o) override {
    if (!reader_url_)
      return ask<storage::bundle::counts>(storage_, "storage", bundle, o);
    // On a connection of its own, in one snapshot: sessions keep writing while it runs.
    storage::bundle::counts out;
    try {
      storage::read_snapshot(*reader_url_, system_now, [&](storage::op_context& c) { out = storage::execute(c, o); });
    } catch (...) {
      throw admin::unavailable("the database: " + storage::current_exception_message());
    }
    return out;
  }
  storage::bundle::import_bundle::result_type import_bundle(const storage::bundle::import_bundle& o) override {
    if (reader_url_ && reader_url_->kind == storage::backend::postgresql) {
      // On a connection of its own, in one transaction: sessions keep writing beside it. Not on
      // SQLite: its one write lock would make them wait for the whole import anyway, and the
      // storage actor does the import faster (a warm cache, no busy-wait backoff): BENCHMARKS.md.
      storage::bundle::import_bundle::result_type out;
      try {
        storage::write_transaction(*reader_url_, system_now, o.dry_run,
                                   [&](storage::op_context& c) { out = storage::execute(c, o); });
      } catch (const storage::database_unavailable& e) {
        throw admin::unavailable(std::string("the database: ") + e.what());
      } catch (const std::exception&) { // the bundle's rows: a reference or a value the database refused
        throw std::runtime_error(storage::current_exception_message());
      }
      return out;
    }
    // The operation failing on its own is the bundle's fault (a reference that exists nowhere);
    // no answer in time is the database's.
    caf::scoped_actor self{sys_};
    std::optional<storage::bundle::import_bundle::result_type> out;
    caf::error err;
    self->request(storage_, bundle, o)
      .receive([&](storage::bundle::import_bundle::result_type& r) { out = std::move(r); },
               [&](caf::error& e) { err = std::move(e); });
    if (out)
      return *out;
    if (is(err, storage_errc::refused)) // the database refused the bundle's rows
      throw std::runtime_error(render(err));
    throw admin::unavailable("storage: " + render(err));
  }
  std::vector<connected_node> connected() override {
    return ask<std::vector<connected_node>>(registry_, "registry", part, caf::get_atom::value);
  }
  uint64_t connected_count() override { return ask<uint64_t>(registry_, "registry", part, stats_atom::value); }
  std::vector<connected_node> connected_among(const std::vector<std::string>& node_ids) override {
    return ask<std::vector<connected_node>>(registry_, "registry", part, caf::get_atom::value, node_ids);
  }
  bool close_session(const std::string& name) override {
    return ask<bool>(registry_, "registry", part, disable_atom::value, name);
  }
  bool close_drained(const std::string& name) override {
    return ask<bool>(registry_, "registry", part, node_drain_atom::value, name);
  }
  drain_result drain(const std::string& node_id, milliseconds deadline) override {
    // The tracker answers at the deadline at the latest.
    return ask<drain_result>(tracker_, "tracker", deadline + write, node_drain_atom::value, node_id,
                             caf::timespan{deadline});
  }
  storage::node_attempt_counts::result_type node_attempts(const std::string& node_id) override {
    return op(storage::node_attempt_counts{node_id}, part);
  }
  tracker_status tracker() override { return ask<tracker_status>(tracker_, "tracker", part, caf::get_atom::value); }
  cancel_result cancel_requests(const std::vector<std::string>& request_ids) override {
    return ask<cancel_result>(tracker_, "tracker", write, cancel_atom::value, request_ids);
  }
  order_result backfill(const std::string& attempt_id) override {
    return ask<order_result>(scheduler_, "scheduler", write, backfill_atom::value, attempt_id);
  }
  check_dispatch_result dispatch_check(const check_dispatch& d) override {
    return ask<check_dispatch_result>(registry_, "registry", part, check_atom::value, d);
  }

private:
  static constexpr milliseconds part = std::chrono::duration_cast<milliseconds>(defaults::admin_part_timeout);
  static constexpr milliseconds write = std::chrono::duration_cast<milliseconds>(defaults::admin_write_timeout);

  static constexpr milliseconds bundle = std::chrono::duration_cast<milliseconds>(defaults::bundle_timeout);

  /// The storage actor's own failures carry the database's message as their context.
  std::string render(const caf::error& e) {
    if (e.category() == storage_error_category)
      return storage_message(e);
    if (e == caf::sec::request_timeout)
      return "no answer in time";
    return sys_.render(e);
  }

  template <class Result, class Handle, class... Ts>
  Result ask(const Handle& dest, const char* who, milliseconds timeout, Ts&&... xs) {
    if (!dest)
      throw admin::unavailable(std::string(who) + " is not running");
    caf::scoped_actor self{sys_};
    std::optional<Result> out;
    std::string err;
    self->request(dest, timeout, std::forward<Ts>(xs)...)
      .receive([&](Result& r) { out = std::move(r); }, [&](caf::error& e) { err = render(e); });
    if (!out)
      throw admin::unavailable(std::string(who) + ": " + err);
    return std::move(*out);
  }

  template <class Op>
  typename Op::result_type op(const Op& o, milliseconds timeout) {
    return ask<typename Op::result_type>(storage_, "storage", timeout, o);
  }

  caf::actor_system& sys_;
  storage_actor storage_;
  registry_actor registry_;
  tracker_actor tracker_;
  scheduler_actor scheduler_;
  storage::size_sampler* sampler_ = nullptr;       // owned by admin_state, which outlives every request
  std::optional<storage::storage_url> reader_url_; // exports and imports on their own connection
};

struct admin_state {
  static inline const char* name = "admin";
  std::unique_ptr<storage::size_sampler> sampler; // destroyed after the server below is joined
  std::unique_ptr<actor_backend> backend;
  std::unique_ptr<admin::api> api;
  std::unique_ptr<httplib::Server> server;
  std::thread thread;
  std::shared_ptr<std::atomic<bool>> serving_done = std::make_shared<std::atomic<bool>>(false);
  uint16_t port = 0;
  // The charts' sampler (GET /api/history): a reading every defaults::history_every.
  std::mutex history_mutex;
  std::condition_variable history_wake;
  bool history_stop = false;
  std::thread history_thread;

  ~admin_state() {
    if (history_thread.joinable()) {
      {
        std::lock_guard<std::mutex> lock(history_mutex);
        history_stop = true;
      }
      history_wake.notify_all();
      history_thread.join();
    }
    if (!thread.joinable())
      return;
    // httplib's stop() does nothing until the server thread has marked itself running, and
    // asserts if called twice: a shutdown right after startup (SIGINT at "ready") would join a
    // server that never stops. So wait until it runs (or has given up), then stop it once.
    while (!server->is_running() && !serving_done->load())
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (!serving_done->load())
      server->stop();
    thread.join();
  }
};

using self_ptr = admin_actor::stateful_pointer<admin_state>;

/// One reading for the charts: sessions now, and the tracker's counters (left out if it does not
/// answer in time).
void sample_history(admin_state& st) {
  admin::history_sample s;
  auto now = system_now();
  s.at = format_time(now);
  s.at_ms = std::chrono::duration_cast<milliseconds>(now.time_since_epoch()).count();
  s.connected = metrics::daemon().sessions.load();
  try {
    auto t = st.backend->tracker();
    s.completed = static_cast<int64_t>(t.completed);
    s.answered = static_cast<int64_t>(t.answered);
    s.answered_ms = static_cast<int64_t>(t.answered_ms);
  } catch (const std::exception&) {
  }
  st.api->record_history(std::move(s));
}

void start_history(admin_state& st) {
  st.history_thread = std::thread([&st] {
    std::unique_lock<std::mutex> lock(st.history_mutex);
    while (!st.history_stop) {
      lock.unlock();
      sample_history(st);
      lock.lock();
      st.history_wake.wait_for(lock, defaults::history_every, [&] { return st.history_stop; });
    }
  });
}

admin::http_request to_request(const httplib::Request& req) {
  admin::http_request r;
  r.method = req.method;
  r.path = req.path;
  for (auto& [k, v] : req.params)
    r.params.emplace(k, v);
  r.body = req.body;
  r.authorization = req.get_header_value("Authorization");
  r.host = req.get_header_value("Host");
  r.origin = req.get_header_value("Origin");
  r.content_type = req.get_header_value("Content-Type");
  return r;
}

void serve(admin::api& api, const httplib::Request& req, httplib::Response& res) {
  auto out = api.handle(to_request(req));
  res.status = out.status;
  if (out.stream) {
    auto stream = std::make_shared<std::function<bool(std::string&)>>(std::move(out.stream));
    res.set_chunked_content_provider(out.content_type, [stream](size_t, httplib::DataSink& sink) {
      std::string chunk;
      bool more = (*stream)(chunk);
      if (!chunk.empty() && !sink.write(chunk.data(), chunk.size()))
        return false; // the client went away
      if (!more)
        sink.done();
      return true;
    });
  } else {
    res.set_content(out.body, out.content_type);
  }
}

/// Every TLS handshake of the admin API switches to the context current at that moment, so a
/// reloaded certificate (or client CA) applies to new connections without a restart.
int use_current_context(SSL* ssl, int* alert, void* arg) {
  auto current = static_cast<tls::server_setting*>(arg)->get();
  if (!current.ctx) {
    *alert = SSL_AD_INTERNAL_ERROR;
    return SSL_CLIENT_HELLO_ERROR;
  }
  SSL_CTX* ctx = current.ctx->native();
  SSL_set_SSL_CTX(ssl, ctx); // takes a reference: the context outlives a reload for this handshake
  SSL_set_verify(ssl, SSL_CTX_get_verify_mode(ctx), nullptr);
  SSL_set_min_proto_version(ssl, SSL_CTX_get_min_proto_version(ctx));
  return SSL_CLIENT_HELLO_SUCCESS;
}

std::unique_ptr<httplib::Server> make_server(const std::shared_ptr<tls::server_setting>& tls) {
  if (!tls || !tls->get().ctx)
    return std::make_unique<httplib::Server>();
  return std::make_unique<httplib::SSLServer>([setting = tls.get()](SSL_CTX& ctx) {
    SSL_CTX_set_client_hello_cb(&ctx, use_current_context, setting);
    return true;
  });
}

admin_actor::behavior_type admin_impl(self_ptr self, admin_options opts) {
  auto& st = self->state;
  st.backend = std::make_unique<actor_backend>(self->system(), opts);
  if (opts.reader_url) {
    st.sampler = std::make_unique<storage::size_sampler>(*opts.reader_url, system_now, opts.sizes_every);
    st.sampler->start();
    st.backend->use_sampler(st.sampler.get());
    st.backend->use_reader(*opts.reader_url);
  }
  admin::api_options ao;
  ao.token = opts.token;
  ao.version = version;
  ao.started_at = opts.started_at;
  ao.instance_id = opts.instance_id;
  ao.max_rows_per_action = opts.max_rows_per_action;
  ao.max_rows_per_action_hard = opts.max_rows_per_action_hard;
  ao.checks = opts.checks;
  ao.dashboard_html = admin::dashboard_html();
  ao.browser.listen_host = opts.host;
  const bool https = opts.tls && opts.tls->get().ctx;
  ao.browser.scheme = https ? "https" : "http";
  ao.browser.allowed_hosts = opts.allowed_hosts;
  st.api = std::make_unique<admin::api>(*st.backend, std::move(ao));
  start_history(st);
  st.server = make_server(opts.tls);
  auto& srv = *st.server;
  srv.new_task_queue = [] { return new httplib::ThreadPool(defaults::admin_threads); };
  srv.set_payload_max_length(opts.max_body_bytes);
  srv.set_read_timeout(30, 0);
  srv.set_write_timeout(30, 0);
  srv.set_keep_alive_max_count(100);
  auto* api = st.api.get();
  auto handler = [api](const httplib::Request& req, httplib::Response& res) { serve(*api, req, res); };
  srv.Get(".*", handler);
  srv.Post(".*", handler);
  srv.Delete(".*", handler);
  srv.Put(".*", handler);
  srv.Patch(".*", handler);
  srv.Options(".*", handler);
  // cpp-httplib answers some requests itself, with an empty body: a body over the payload limit
  // (413, checked against Content-Length before the body is read), a request it cannot parse.
  // The error handler sees every answer of 400 and above, the API's own included: only an empty
  // body is replaced, by the API's envelope.
  srv.set_error_handler(httplib::Server::HandlerWithResponse(
    [limit = opts.max_body_bytes](const httplib::Request&, httplib::Response& res) {
      if (!res.body.empty())
        return httplib::Server::HandlerResponse::Unhandled;
      auto out = admin::transport_error(res.status, limit);
      res.set_content(out.body, out.content_type);
      return httplib::Server::HandlerResponse::Handled;
    }));
  srv.set_logger([](const httplib::Request& req, const httplib::Response& res) {
    log::debug("admin request", {{"method", req.method}, {"path", req.path}, {"status", res.status}});
  });
  int port =
    opts.port == 0 ? srv.bind_to_any_port(opts.host) : (srv.bind_to_port(opts.host, opts.port) ? opts.port : -1);
  if (port <= 0) {
    log::error("cannot listen for the admin API", {{"listen", opts.host + ":" + std::to_string(opts.port)}});
    self->quit(caf::make_error(caf::sec::cannot_open_port,
                               "admin API: cannot listen on " + opts.host + ":" + std::to_string(opts.port)));
    return {[](port_atom) -> uint16_t { return 0; }, [](status_atom, bool) {}, [](token_atom, const std::string&) {}};
  }
  st.port = static_cast<uint16_t>(port);
  st.thread = std::thread([&srv, done = st.serving_done] {
    srv.listen_after_bind();
    done->store(true);
  });
  log::info("admin listening", {{"address", opts.host + ":" + std::to_string(st.port)},
                                {"token", opts.token.empty() ? "none" : "required"},
                                {"tls", !https                                    ? "off"
                                        : opts.tls->get().ctx->verifies_clients() ? "mutual"
                                                                                  : "on"}});
  return {
    [=](port_atom) { return self->state.port; },
    [=](status_atom, bool listening) { self->state.api->set_listening(listening); },
    [=](token_atom, const std::string& token) { self->state.api->set_token(token); },
  };
}

} // namespace

admin_actor spawn_admin(caf::actor_system& sys, admin_options opts) { return sys.spawn(admin_impl, std::move(opts)); }

} // namespace nodecoord
