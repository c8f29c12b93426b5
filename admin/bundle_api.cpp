// GET /api/bundle and POST /api/bundle (docs/admin-api.md): both are jobs in the ledger (the
// export's is written when it is done, so a bundle never carries its own export as running).
// Export: read in one snapshot on a connection of its own (actors/admin.cpp), written to an
// unlinked temporary file in $TMPDIR (so the manifest's counts and every reference agree with the
// lines, whatever the nodes send meanwhile), then the file is streamed. Import: every line is
// checked before any SQL; the rows go in in one transaction, idempotently.
#include "admin/envelope.hpp"

#include "common/clock.hpp"
#include "common/ids.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace nodecoord::admin {

using json = nlohmann::json;

namespace {

json counts_json(const storage::bundle::counts& c) {
  return {{"nodes", c.nodes}, {"attempts", c.attempts}, {"logs", c.logs}, {"jobs", c.jobs}, {"audit", c.audit}};
}

json kind_json(const storage::bundle::import_bundle::result_type::kind& k) {
  return {{"inserted", k.inserted}, {"skipped", k.skipped}, {"conflicting", k.conflicting}};
}

json import_json(const storage::bundle::import_bundle::result_type& r) {
  return {{"nodes", kind_json(r.nodes)},
          {"attempts", kind_json(r.attempts)},
          {"logs", kind_json(r.logs)},
          {"jobs", kind_json(r.jobs)},
          {"audit", kind_json(r.audit)}};
}

/// Records a bundle job as running; its id.
std::string start_job(backend& b, const std::string& type, const json& detail) {
  storage::job_insert op;
  op.job.id = new_uuid();
  op.job.type = type;
  op.job.status = "running";
  op.job.detail = detail.dump();
  b.insert_job(op);
  return op.job.id;
}

/// Finishes a bundle job; a ledger write that fails does not change the answer.
void finish_job(backend& b, const std::string& id, const std::string& status, const json& detail,
                const std::string& error = "") {
  try {
    b.update_job(storage::job_update{id, status, detail.dump(), error});
  } catch (const unavailable&) {
  }
}

/// Where exports are spooled: $TMPDIR, else /tmp. Operators keep it off the database's disk
/// (docs/operations.md: writing there delays the database's fsyncs).
std::string spool_dir() {
  const char* dir = std::getenv("TMPDIR");
  return dir && *dir ? dir : "/tmp";
}

/// An unlinked temporary file in `dir`; nullptr with errno set if there is none.
std::FILE* unlinked_temp_file(const std::string& dir) {
  std::string path = dir + "/nodecoord-export-XXXXXX";
  int fd = ::mkstemp(path.data());
  if (fd < 0)
    return nullptr;
  ::unlink(path.c_str());
  std::FILE* f = ::fdopen(fd, "w+");
  if (!f) {
    int why = errno; // for the caller's message, past close()
    ::close(fd);
    errno = why;
  }
  return f;
}

} // namespace

http_response api::export_bundle() {
  auto dir = spool_dir();
  std::FILE* spool = unlinked_temp_file(dir);
  if (!spool)
    throw unavailable("cannot create a temporary file for the export in " + dir + ": " + std::strerror(errno));
  std::shared_ptr<std::FILE> file(spool, [](std::FILE* f) { std::fclose(f); });
  // The export's own job is written after it, so the bundle does not carry it as running.
  auto started = now_text();
  auto record = [&](const std::string& status, const json& detail, const std::string& error) {
    storage::job_insert op;
    op.job.id = new_uuid();
    op.job.type = "bundle_export";
    op.job.status = status;
    op.job.detail = detail.dump();
    op.job.error = error;
    op.job.created_at = started;
    op.job.started_at = started;
    try {
      backend_.insert_job(op);
    } catch (const unavailable&) {
    }
  };
  storage::bundle::counts counts;
  try {
    counts = backend_.export_bundle(storage::bundle::export_file{file, started});
  } catch (const std::exception& e) {
    record("failed", json::object(), e.what());
    throw unavailable(std::string("export failed: ") + e.what());
  }
  record("succeeded", {{"counts", counts_json(counts)}}, "");
  std::rewind(file.get());
  http_response r;
  r.content_type = "application/x-ndjson";
  r.stream = [file](std::string& chunk) {
    char buf[64 * 1024];
    auto n = std::fread(buf, 1, sizeof buf, file.get());
    chunk.append(buf, n);
    return n == sizeof buf;
  };
  return r;
}

http_response api::import_bundle(const http_request& req) {
  audit_for("bundle.import", "");
  auto [lo, hi] = req.params.equal_range("dry_run");
  bool dry_run = false;
  for (auto& [k, v] : req.params)
    if (k != "dry_run")
      bad_request("unknown parameter '" + k + "'; allowed: dry_run");
  if (lo != hi) {
    if (std::next(lo) != hi)
      bad_request("parameter 'dry_run' is given more than once");
    if (lo->second == "1" || lo->second == "true")
      dry_run = true;
    else if (lo->second != "0" && lo->second != "false")
      bad_request("dry_run must be 1 or 0, not '" + lo->second + "'");
  }
  json detail{{"dry_run", dry_run}, {"bytes", req.body.size()}};
  audit_for("bundle.import", "", detail.dump());
  auto parsed = storage::bundle::parse(req.body);
  if (auto* err = std::get_if<storage::bundle::parse_error>(&parsed)) {
    auto job = start_job(backend_, "bundle_import", detail);
    detail["line"] = err->line;
    finish_job(backend_, job, "failed", detail, err->message);
    throw api_error{400, "bad_request", "bundle rejected, nothing imported: " + err->message};
  }
  auto bundle = std::make_shared<const storage::bundle::parsed>(std::move(std::get<storage::bundle::parsed>(parsed)));
  auto job = start_job(backend_, "bundle_import", detail);
  storage::bundle::import_bundle::result_type result;
  try {
    result = backend_.import_bundle(storage::bundle::import_bundle{bundle, dry_run});
  } catch (const unavailable& e) {
    finish_job(backend_, job, "failed", detail, e.what());
    throw;
  } catch (const std::exception& e) {
    finish_job(backend_, job, "failed", detail, e.what());
    throw api_error{400, "bad_request", std::string("bundle rejected, nothing imported: ") + e.what()};
  }
  detail["counts"] = import_json(result);
  finish_job(backend_, job, "succeeded", detail);
  audit_after(import_json(result).dump());
  return reply(200, {{"dry_run", dry_run}, {"job_id", job}, {"counts", import_json(result)}});
}

} // namespace nodecoord::admin
