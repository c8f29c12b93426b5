#pragma once
// What the rounds share (fault_test.cpp, instances_test.cpp): waiting for the coordinator to
// settle, the verdict's assertions and the summary's counts. Boost.Test is used here (the
// assertions), so only the test sources include it.
#include "faults/check.hpp"
#include "faults/recorder.hpp"
#include "storage/url.hpp"

#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace nodecoord::faults {

/// Polls the coordinator until it holds exactly what the stores hold (returns the settle time),
/// or until nothing can change any more (nothing partial or pending, every agent's data
/// confirmed, nothing moved for 12 s), or `bound_s`; nullopt when it did not settle. `say`
/// prints progress.
std::optional<double> settle_round(const storage::storage_url& url, const std::vector<agent_ref>& agents, int bound_s,
                                   const std::function<void(const std::string&)>& say);

/// The recorders give every open attempt a final state and stop; requires that they all finish
/// (bounded) without an error.
void finish_recorders(const std::vector<std::unique_ptr<recorder>>& recorders);

/// The finding counts of `r` for a summary file.
nlohmann::json finding_counts(const check_report& r);

/// One BOOST_TEST per finding category (each must be empty) and one for the anomalies (processes
/// that exited by themselves, zombies that did not notice, ...). `stopped`: what "after the daemon
/// stopped" means in the open-jobs message.
void require_clean(const check_report& r, const std::vector<std::string>& anomalies, const std::string& stopped);

} // namespace nodecoord::faults
