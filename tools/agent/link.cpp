#include "tools/agent/link.hpp"

#include "common/ids.hpp"
#include "common/log.hpp"
#include "protocol/codec.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <system_error>
#include <thread>

namespace nodecoord::agent {

using json = nlohmann::json;

namespace {

std::string text_field(const json& f, const char* key) {
  auto it = f.find(key);
  return it != f.end() && it->is_string() ? it->get<std::string>() : std::string{};
}

std::string argv_text(const std::vector<std::string>& argv) {
  return json(argv).dump(-1, ' ', false, json::error_handler_t::replace);
}

/// The coordinator refuses a frame holding U+0000 (its database cannot store it): NUL bytes of
/// a check's output become U+FFFD, as invalid UTF-8 does when encoded.
std::string without_nul(std::string s) {
  if (s.find('\0') == std::string::npos)
    return s;
  std::string out;
  out.reserve(s.size() + 16);
  for (char c : s)
    if (c == '\0')
      out += "\xef\xbf\xbd";
    else
      out += c;
  return out;
}

/// A check_result line of at most `max` bytes: JSON escaping can make output up to six times
/// longer (control bytes become \u00XX), and a frame over the coordinator's limit would end the
/// connection. The longest prefix of the output that fits is sent, marked truncated.
std::string result_line(protocol::check_result r, size_t max) {
  auto line = protocol::encode_check_result(r);
  if (line.size() <= max)
    return line;
  std::string all = std::move(r.output);
  r.truncated = true;
  size_t fits = 0, too_long = all.size(); // escaping makes a prefix's size hard to tell: search
  while (fits + 1 < too_long) {
    auto mid = fits + (too_long - fits) / 2;
    r.output.assign(all, 0, mid);
    if (protocol::encode_check_result(r).size() <= max)
      fits = mid;
    else
      too_long = mid;
  }
  r.output.assign(all, 0, fits);
  return protocol::encode_check_result(r);
}

} // namespace

coordinator_link::coordinator_link(store& s, link_options o) : store_(s), opts_(std::move(o)) {}

std::string coordinator_link::start() {
  ++generation_; // results of checks asked on the old connection are not sent on this one
  welcomed_ = false;
  node_id_.clear();
  sent_.clear();
  awaiting_.clear(); // acks of the old connection never come
  protocol::hello h;
  h.protocol = protocol::version;
  h.node = opts_.node;
  h.key = opts_.key;
  h.agent = opts_.agent;
  h.capabilities = opts_.capabilities;
  // Even with an empty allow-list: the agent then answers every check_request `refused`, which
  // tells the operator more than a coordinator that never asks.
  h.features = {protocol::feature::checks};
  return protocol::encode_hello(h);
}

std::string coordinator_link::bye(const std::string& reason) const { return protocol::encode_bye(reason); }

void coordinator_link::heartbeat(std::string& out) { out += protocol::encode_heartbeat(next_heartbeat_++); }

link_event coordinator_link::on_line(std::string_view line, std::string& out) {
  link_event ev;
  auto f = json::parse(line, nullptr, false);
  if (!f.is_object()) {
    ev.message = "coordinator sent a line that is not a JSON object";
    ++counters_.errors;
    return ev;
  }
  auto type = text_field(f, "type");
  if (type == "welcome") {
    welcomed_ = true;
    node_id_ = text_field(f, "node_id");
    if (auto it = f.find("heartbeat_interval_ms"); it != f.end() && it->is_number_integer() && it->get<int64_t>() > 0)
      heartbeat_interval_ms_ = it->get<int64_t>();
    ev.what = link_event::kind::welcome;
  } else if (type == "heartbeat_ack") {
    if (auto it = f.find("seq"); it != f.end() && it->is_number_integer())
      on_ack(it->get<int64_t>());
  } else if (type == "backfill_request") {
    answer_backfill(f, out);
  } else if (type == "check_request") {
    on_check_request(line, f, out);
  } else if (type == "error") {
    on_error(f, ev);
  } else if (type == "close") {
    ev.what = link_event::kind::closing;
    ev.detail = text_field(f, "reason");
  }
  // Anything else is a newer protocol's addition: ignored (docs/protocol.md).
  return ev;
}

void coordinator_link::on_error(const json& f, link_event& ev) {
  auto code = text_field(f, "code");
  if (code == protocol::code::ack_delayed && welcomed_) {
    ++counters_.acks_delayed;
    ev.what = link_event::kind::delayed;
    ev.message = text_field(f, "message");
    return;
  }
  ++counters_.errors;
  auto ref = text_field(f, "ref");
  ev.detail = code;
  ev.message = text_field(f, "message");
  if (!welcomed_) {
    ev.what = link_event::kind::refused;
    return;
  }
  if ((code == protocol::code::forbidden || code == protocol::code::refused) && !ref.empty()) {
    // Another node owns this attempt id, or the database refused these values: resending the
    // same cannot help (a later change of the attempt is sent again).
    store_.give_up(ref);
    return;
  }
  if ((code == protocol::code::unavailable || code == protocol::code::unknown_attempt) && !ref.empty()) {
    // Not stored: send it all again (next poll), and let no pending ack confirm it.
    store_.unconfirm(ref);
    sent_.erase(ref);
    for (auto& [seq, list] : awaiting_)
      std::erase_if(list, [&](const confirmation& c) { return c.attempt_id == ref; });
  }
}

void coordinator_link::on_ack(int64_t seq) {
  // Acks come in order: this one confirms everything sent before its heartbeat.
  auto end = awaiting_.upper_bound(seq);
  for (auto it = awaiting_.begin(); it != end; ++it)
    for (auto& c : it->second) {
      store_.confirm(c.attempt_id, c.version, c.logs);
      ++counters_.confirmations;
    }
  awaiting_.erase(awaiting_.begin(), end);
}

void coordinator_link::confirm_after(std::vector<confirmation> c, std::string& out) {
  if (c.empty())
    return;
  awaiting_[next_heartbeat_] = std::move(c);
  heartbeat(out);
}

int64_t coordinator_link::send_attempt(const attempt_row& a, int64_t from, int64_t to, std::string& out) {
  protocol::attempt frame{a.id, a.task_id, a.state, a.started_at, a.finished_at, a.meta};
  out += protocol::encode_attempt(frame);
  ++counters_.attempts_sent;
  if (from >= to)
    return 0;
  auto lines = store_.logs(a.id, from, to);
  protocol::logs batch{a.id, {}};
  size_t bytes = 0;
  auto flush = [&] {
    if (batch.entries.empty())
      return;
    out += protocol::encode_logs(batch);
    batch.entries.clear();
    bytes = 0;
  };
  for (auto& l : lines) {
    auto size = l.line.size() + l.ts.size() + 64;
    if (batch.entries.size() >= opts_.max_lines_per_frame || (bytes + size > opts_.max_frame_bytes && bytes > 0))
      flush();
    batch.entries.push_back({l.seq, l.ts, l.stream, l.line});
    bytes += size;
  }
  flush();
  counters_.lines_sent += lines.size();
  return static_cast<int64_t>(lines.size());
}

void coordinator_link::poll_store(std::string& out) {
  send_finished_checks(out);
  if (!welcomed_)
    return;
  std::vector<confirmation> sent_now;
  for (auto& a : store_.unconfirmed(opts_.poll_attempts)) {
    auto& s = sent_[a.id];
    auto from = std::max(a.delivered_logs, s.logs);
    bool new_fields = a.version > std::max(a.announced_version, s.version);
    if (!new_fields && from >= a.log_count)
      continue; // sent on this connection, not yet confirmed
    auto to = std::min(a.log_count, from + opts_.poll_lines);
    send_attempt(a, from, to, out); // the attempt frame always goes first: logs need it known
    s.version = a.version;
    s.logs = to;
    sent_now.push_back({a.id, a.version, to});
  }
  confirm_after(std::move(sent_now), out);
}

void coordinator_link::answer_backfill(const json& f, std::string& out) {
  protocol::backfill_response resp;
  resp.request_id = text_field(f, "request_id");
  auto ids = f.find("attempt_ids");
  auto after = f.find("logs_after");
  std::vector<confirmation> sent_now;
  if (ids != f.end() && ids->is_array())
    for (auto& v : *ids) {
      if (!v.is_string())
        continue;
      auto id = v.get<std::string>();
      auto a = store_.attempt(id);
      if (!a) {
        resp.results.push_back({id, false, 0, "attempt not in this agent's store"});
        continue;
      }
      int64_t from = 0;
      if (after != f.end() && after->is_object())
        if (auto it = after->find(id); it != after->end() && it->is_number_integer())
          from = std::max<int64_t>(0, it->get<int64_t>() + 1);
      send_attempt(*a, from, a->log_count, out);
      auto& s = sent_[id];
      s.version = std::max(s.version, a->version);
      s.logs = std::max(s.logs, a->log_count);
      // The coordinator holds lines up to logs_after, and now the rest.
      sent_now.push_back({id, a->version, a->log_count});
      resp.results.push_back({id, true, a->log_count, ""});
    }
  out += protocol::encode_backfill_response(resp);
  ++counters_.requests_answered;
  confirm_after(std::move(sent_now), out);
}

void coordinator_link::refuse_check(const std::string& request_id, const std::string& name, std::string error,
                                    std::string& out) {
  ++counters_.checks_refused;
  log::warn("check refused", {{"name", name}, {"request_id", request_id}, {"error", error}});
  protocol::check_result r;
  r.request_id = request_id;
  r.status = protocol::check_status::refused;
  r.error = std::move(error);
  out += protocol::encode_check_result(r);
}

void coordinator_link::on_check_request(std::string_view line, const json& f, std::string& out) {
  std::string why;
  auto req = protocol::decode_check_request(line, why);
  if (!req) {
    ++counters_.errors;
    auto id = text_field(f, "request_id");
    if (!is_uuid(id)) {
      log::warn("coordinator sent a check_request the agent cannot read", {{"error", why}});
      return; // nothing to answer to
    }
    std::transform(id.begin(), id.end(), id.begin(), [](unsigned char c) { return std::tolower(c); });
    refuse_check(id, text_field(f, "name"), why, out);
    return;
  }
  auto& name = req->name;
  auto allowed = opts_.checks.find(name);
  if (allowed == opts_.checks.end())
    return refuse_check(req->request_id, name, "check '" + name + "' is not allowed by this agent's config", out);
  if (allowed->second != req->argv)
    return refuse_check(req->request_id, name,
                        "check '" + name + "': the coordinator's argv differs from this agent's config", out);
  bool busy = false;
  {
    std::lock_guard lock(checks_->m);
    busy = checks_->running >= opts_.max_running_checks;
    if (!busy)
      ++checks_->running; // taken before the thread exists: the next request counts it
  }
  if (busy)
    return refuse_check(req->request_id, name,
                        "too many checks running (" + std::to_string(opts_.max_running_checks) + ")", out);
  auto timeout = std::chrono::milliseconds(req->timeout_ms);
  // Never more than a frame can carry (and bounded memory, whatever the request says).
  auto output_max = std::min(static_cast<size_t>(std::max<int64_t>(0, req->output_max)), opts_.max_frame_bytes);
  log::info("running check", {{"name", name}, {"argv", argv_text(req->argv)}, {"request_id", req->request_id}});
  finished_check job{generation_, req->request_id, name, req->argv, {}};
  try {
    std::thread([state = checks_, job, timeout, output_max]() mutable {
      try {
        job.outcome = run_check(job.argv, timeout, output_max);
      } catch (const std::exception& e) {
        job.outcome = {protocol::check_status::failed_to_start, -1, "", false,
                       std::string("cannot run it: ") + e.what()};
      }
      std::lock_guard lock(state->m);
      state->done.push_back(std::move(job));
      --state->running;
    }).detach();
  } catch (const std::system_error& e) {
    {
      std::lock_guard lock(checks_->m);
      --checks_->running;
    }
    log::error("cannot start a thread for a check", {{"name", name}, {"error", e.what()}});
    protocol::check_result r{req->request_id,
                             protocol::check_status::failed_to_start,
                             -1,
                             "",
                             false,
                             std::string("the agent cannot start a thread: ") + e.what()};
    out += protocol::encode_check_result(r);
    return;
  }
  ++counters_.checks_run;
}

void coordinator_link::send_finished_checks(std::string& out) {
  std::vector<finished_check> done;
  {
    std::lock_guard lock(checks_->m);
    done.swap(checks_->done);
  }
  for (auto& j : done) {
    auto& o = j.outcome;
    if (j.generation != generation_) {
      log::info("check result dropped: the connection that asked for it has ended",
                {{"name", j.name}, {"request_id", j.request_id}, {"status", o.status}});
      continue;
    }
    log::info("check finished", {{"name", j.name},
                                 {"argv", argv_text(j.argv)},
                                 {"request_id", j.request_id},
                                 {"status", o.status},
                                 {"exit_code", o.exit_code},
                                 {"output_bytes", o.output.size()},
                                 {"truncated", o.truncated}});
    out += result_line({j.request_id, o.status, o.exit_code, without_nul(std::move(o.output)), o.truncated, o.error},
                       opts_.max_frame_bytes);
  }
}

size_t coordinator_link::checks_running() const {
  std::lock_guard lock(checks_->m);
  return checks_->running;
}

} // namespace nodecoord::agent
