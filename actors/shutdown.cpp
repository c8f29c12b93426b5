#include "actors/shutdown.hpp"

#include "common/log.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/exit_reason.hpp>

#include <memory>

namespace nodecoord {

namespace {

// Templated on the actor that runs the sequence: the supervisor (typed) or a test's helper.
template <class Self>
struct run {
  Self* self;
  shutdown_stages stages;
  std::function<void(const shutdown_report&)> done;
  shutdown_report report;
};

template <class Self>
using run_ptr = std::shared_ptr<run<Self>>;

template <class Self, class Handle>
void stop(const run_ptr<Self>& r, const Handle& h) {
  if (h)
    r->self->send_exit(h, caf::exit_reason::user_shutdown);
}

// 4. Everything accepted so far is committed before the storage actor stops.
template <class Self>
void drain(run_ptr<Self> r) {
  if (!r->stages.storage) {
    r->done(r->report);
    return;
  }
  r->self->request(r->stages.storage, caf::infinite, drain_atom::value)
    .then(
      [r](bool ok) {
        r->report.drained = ok;
        log::info("storage drained; stopped");
        stop(r, r->stages.storage);
        r->done(r->report);
      },
      [r](caf::error& e) {
        log::error("storage drain failed", {{"error", to_string(e)}});
        stop(r, r->stages.storage);
        r->done(r->report);
      });
}

// 3. The scheduler stops ordering; the tracker resets what is still in flight, after every
// response it already received (those went to storage first).
template <class Self>
void sync_tracker(run_ptr<Self> r) {
  stop(r, r->stages.scheduler);
  if (!r->stages.tracker) {
    drain(r);
    return;
  }
  r->self->request(r->stages.tracker, caf::infinite, shutdown_atom::value)
    .then(
      [r](uint64_t n) {
        r->report.requests_reset = n;
        if (n > 0)
          log::info("in-flight backfill requests reset", {{"requests", n}});
        stop(r, r->stages.tracker);
        drain(r);
      },
      [r](caf::error& e) {
        log::warn("tracker shutdown", {{"error", to_string(e)}});
        drain(r);
      });
}

// 2. The registry has seen every session end and writes the offline rows.
template <class Self>
void sync_registry(run_ptr<Self> r) {
  if (!r->stages.registry) {
    sync_tracker(r);
    return;
  }
  r->self->request(r->stages.registry, caf::infinite, shutdown_atom::value)
    .then(
      [r](uint64_t) {
        stop(r, r->stages.registry);
        sync_tracker(r);
      },
      [r](caf::error& e) {
        log::warn("registry shutdown", {{"error", to_string(e)}});
        sync_tracker(r);
      });
}

template <class Self>
void start(Self* self, const shutdown_stages& stages, std::function<void(const shutdown_report&)> done) {
  auto r = std::make_shared<run<Self>>(run<Self>{self, stages, std::move(done), {}});
  // 1. Stop accepting and close every session with close{shutdown}.
  if (!stages.acceptor) {
    sync_registry(r);
    return;
  }
  self->request(stages.acceptor, caf::infinite, shutdown_atom::value)
    .then(
      [r](uint64_t n) {
        r->report.sessions_closed = n;
        sync_registry(r);
      },
      [r](caf::error& e) {
        log::warn("acceptor shutdown", {{"error", to_string(e)}});
        sync_registry(r);
      });
}

} // namespace

void shutdown_in_order(caf::event_based_actor* self, const shutdown_stages& stages,
                       std::function<void(const shutdown_report&)> done) {
  start(self, stages, std::move(done));
}

void shutdown_in_order(supervisor_actor::pointer self, const shutdown_stages& stages,
                       std::function<void(const shutdown_report&)> done) {
  start(self, stages, std::move(done));
}

} // namespace nodecoord
