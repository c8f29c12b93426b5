#include "tools/agent/link.hpp"

#include "protocol/codec.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>

namespace nodecoord::agent {

using json = nlohmann::json;

namespace {

std::string text_field(const json& f, const char* key) {
  auto it = f.find(key);
  return it != f.end() && it->is_string() ? it->get<std::string>() : std::string{};
}

} // namespace

coordinator_link::coordinator_link(store& s, link_options o) : store_(s), opts_(std::move(o)) {}

std::string coordinator_link::start() {
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

} // namespace nodecoord::agent
