// libFuzzer target: the CAF-free part of a node session's frame handling, protocol::ack_gate
// (protocol/ack_gate.hpp), fed the way actors/node_session.cpp feeds it: data frames
// (attempt, logs, backfill_response) take a ticket, heartbeats ask for an ack, and a fake
// storage settles the tickets in an order the input chooses (answers come back out of order:
// a backfill_response goes through the tracker).
//
// The input is a program of one-byte operations (plus arguments); operation 0 reads a frame
// line and decodes it with protocol::decode, as the session does, so frames and settle order
// mix. A reference model checks after every step:
//   - a heartbeat is acknowledged at once exactly when nothing is held and every ticket taken
//     before it is settled;
//   - released() hands out held heartbeats in arrival order, each exactly when every ticket
//     taken before it is settled, and never one before that;
//   - every heartbeat is acknowledged once, in arrival order overall;
//   - unsettled() and held() equal the model; delay notices come only while something is held
//     and at most once per interval.
#include "protocol/ack_gate.hpp"
#include "protocol/codec.hpp"

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <set>
#include <string>
#include <vector>

namespace p = nodecoord::protocol;

namespace {

[[noreturn]] void fail(const char* what, uint64_t a = 0, uint64_t b = 0) {
  std::fprintf(stderr, "fuzz_session: %s (%llu, %llu)\n", what, static_cast<unsigned long long>(a),
               static_cast<unsigned long long>(b));
  std::abort();
}

void check(bool ok, const char* what, uint64_t a = 0, uint64_t b = 0) {
  if (!ok)
    fail(what, a, b);
}

struct model {
  uint64_t next = 0;       // tickets taken
  std::set<uint64_t> open; // taken, not settled
  struct held_hb {
    uint64_t barrier;
    int64_t seq;
    std::chrono::steady_clock::time_point since;
  };
  std::deque<held_hb> held;
  std::vector<int64_t> acked;      // every ack, in the order the session writes them
  std::vector<int64_t> heartbeats; // every heartbeat, in arrival order

  bool settled_below(uint64_t barrier) const { return open.empty() || *open.begin() >= barrier; }
};

struct harness {
  p::ack_gate gate;
  model m;
  std::chrono::steady_clock::time_point now{};
  std::chrono::steady_clock::duration interval = std::chrono::seconds(10);
  std::chrono::steady_clock::time_point last_notice{};
  bool noticed = false;

  void frame() {
    auto t = gate.open();
    check(t == m.next, "open() handed out an unexpected ticket", t, m.next);
    m.open.insert(t);
    ++m.next;
  }

  void heartbeat(int64_t seq) {
    m.heartbeats.push_back(seq);
    bool at_once = gate.heartbeat(seq, now);
    bool want = m.held.empty() && m.open.empty();
    check(at_once == want, "heartbeat(): acknowledged at once != nothing held and everything settled", at_once, want);
    if (at_once)
      m.acked.push_back(seq);
    else
      m.held.push_back({m.next, seq, now});
    if (!at_once && gate.delay_notice_due(now, interval)) {
      // Only while the oldest held heartbeat has waited an interval, at most once per interval.
      check(!m.held.empty() && now - m.held.front().since >= interval, "delay notice before an interval passed");
      check(!noticed || now - last_notice >= interval, "two delay notices within one interval");
      noticed = true;
      last_notice = now;
    }
  }

  void settle(uint64_t t) {
    gate.settle(t);
    m.open.erase(t); // unknown or repeated tickets: no change
    release();
  }

  void release() {
    auto out = gate.released();
    std::vector<int64_t> want;
    while (!m.held.empty() && m.settled_below(m.held.front().barrier)) {
      want.push_back(m.held.front().seq);
      m.held.pop_front();
    }
    check(out == want, "released() differs from the model", out.size(), want.size());
    m.acked.insert(m.acked.end(), out.begin(), out.end());
    if (m.held.empty())
      noticed = false; // the next delay is noticed afresh
  }

  void invariants() {
    check(gate.unsettled() == m.open.size(), "unsettled() differs from the model", gate.unsettled(), m.open.size());
    check(gate.held() == m.held.size(), "held() differs from the model", gate.held(), m.held.size());
    // Every ack so far is a prefix of the heartbeats, in order: none skipped, none early.
    check(m.acked.size() + m.held.size() == m.heartbeats.size(), "a heartbeat was lost or acked twice");
    check(std::equal(m.acked.begin(), m.acked.end(), m.heartbeats.begin()), "acks out of arrival order");
  }
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider fdp(data, size);
  harness h;
  int64_t hb_seq = 0;
  size_t steps = 0;
  while (fdp.remaining_bytes() > 0 && steps++ < 20000) {
    auto op = fdp.ConsumeIntegral<uint8_t>();
    switch (op % 8) {
      case 0: {
        // A frame line, decoded as the session does.
        auto line = fdp.ConsumeRandomLengthString(512);
        auto r = p::decode(line);
        if (auto* msg = std::get_if<p::node_message>(&r)) {
          if (std::holds_alternative<p::heartbeat>(*msg))
            h.heartbeat(std::get<p::heartbeat>(*msg).seq);
          else if (std::holds_alternative<p::attempt>(*msg) || std::holds_alternative<p::logs>(*msg)
                   || std::holds_alternative<p::backfill_response>(*msg))
            h.frame();
          // hello (already authenticated) and decode errors are answered at once: no ticket.
        }
        break;
      }
      case 1:
      case 2: h.frame(); break;
      case 3: h.heartbeat(hb_seq++); break;
      case 4:
      case 5: {
        // Storage answers one open frame, chosen by the input.
        if (h.m.open.empty())
          break;
        auto i = fdp.ConsumeIntegralInRange<size_t>(0, h.m.open.size() - 1);
        auto it = h.m.open.begin();
        std::advance(it, static_cast<long>(std::min<size_t>(i, 16)));
        h.settle(op & 0x80 ? *h.m.open.begin() : *it);
        break;
      }
      case 6: {
        // A stray answer: an unknown, repeated or future ticket must change nothing.
        auto t = fdp.ConsumeIntegralInRange<uint64_t>(0, h.m.next + 2);
        if (t < h.m.next && h.m.open.count(t))
          break; // a real settle: not what this step is for
        h.settle(t);
        break;
      }
      case 7:
        h.now += std::chrono::milliseconds(fdp.ConsumeIntegralInRange<int>(0, 20000));
        if (h.gate.delay_notice_due(h.now, h.interval)) {
          check(!h.m.held.empty() && h.now - h.m.held.front().since >= h.interval,
                "delay notice before an interval passed");
          check(!h.noticed || h.now - h.last_notice >= h.interval, "two delay notices within one interval");
          h.noticed = true;
          h.last_notice = h.now;
        }
        break;
    }
    h.invariants();
  }
  // Storage answers everything that is left, oldest last: every heartbeat is acked in the end.
  std::vector<uint64_t> rest(h.m.open.rbegin(), h.m.open.rend());
  for (auto t : rest)
    h.settle(t);
  h.invariants();
  check(h.m.held.empty() && h.gate.held() == 0 && h.gate.unsettled() == 0, "heartbeats still held at the end");
  return 0;
}
