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

// Asks `stage` to shut down; `answered` gets its answer. Then, answered or not (a stage that
// failed or is gone is logged), `next` runs: nothing accepted is dropped because of one stage.
template <class Self, class Handle, class Answered>
void ask_then(run_ptr<Self> r, const Handle& stage, const char* name, Answered answered, void (*next)(run_ptr<Self>)) {
  if (!stage) {
    next(r);
    return;
  }
  r->self->request(stage, caf::infinite, shutdown_atom::value)
    .then(
      [r, answered, next](uint64_t n) {
        answered(r, n);
        next(r);
      },
      [r, name, next](caf::error& e) {
        log::warn(std::string(name) + " shutdown", {{"error", to_string(e)}});
        next(r);
      });
}

// 3b. The tracker resets what is still in flight, after every response it already received
// (those went to storage first).
template <class Self>
void sync_tracker(run_ptr<Self> r) {
  ask_then(
    r, r->stages.tracker, "tracker",
    [](const run_ptr<Self>& rr, uint64_t n) {
      rr->report.requests_reset = n;
      if (n > 0)
        log::info("in-flight backfill requests reset", {{"requests", n}});
      stop(rr, rr->stages.tracker);
    },
    &drain<Self>);
}

// 3a. The scheduler stops ordering; a reconcile pass in flight gets its job row `abandoned`.
template <class Self>
void sync_scheduler(run_ptr<Self> r) {
  ask_then(
    r, r->stages.scheduler, "scheduler",
    [](const run_ptr<Self>& rr, uint64_t n) {
      rr->report.passes_abandoned = n;
      stop(rr, rr->stages.scheduler);
    },
    &sync_tracker<Self>);
}

// 2. The registry has seen every session end and writes the offline rows.
template <class Self>
void sync_registry(run_ptr<Self> r) {
  ask_then(
    r, r->stages.registry, "registry", [](const run_ptr<Self>& rr, uint64_t) { stop(rr, rr->stages.registry); },
    &sync_scheduler<Self>);
}

// 1. Stop accepting and close every session with close{shutdown}.
template <class Self>
void start(Self* self, const shutdown_stages& stages, std::function<void(const shutdown_report&)> done) {
  auto r = std::make_shared<run<Self>>(run<Self>{self, stages, std::move(done), {}});
  ask_then(
    r, stages.acceptor, "acceptor", [](const run_ptr<Self>& rr, uint64_t n) { rr->report.sessions_closed = n; },
    &sync_registry<Self>);
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
