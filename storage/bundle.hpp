#pragma once
// Bundles (docs/admin-api.md, GET/POST /api/bundle): the whole database as JSON Lines, and its
// import. No CAF here.
//
// Format (version 2), one JSON object a line, "\n" after each:
//   {"type":"manifest","format":"nodecoord-bundle","version":2,"created_at":"<RFC 3339>",
//    "counts":{"nodes":n,"attempts":n,"logs":n,"jobs":n,"audit":n}}                 first line
//   {"type":"node","id",…}      node_record without key_id and key_hash
//   {"type":"attempt","id",…}   attempt_record without log_count / log_max_seq (derived), with
//                               logs_pruned and logs_pruned_through (null: none); meta as a
//                               JSON object
//   {"type":"log","attempt_id","seq","ts","stream","line"}
//   {"type":"job","id","job_type",…}  job_record; its `type` is "job_type" ("type" says the
//                               kind of line); detail as a JSON object
//   {"type":"audit","id",…}     audit_record: the ledger; filter and counts as JSON objects
// An empty or NULL value is JSON null. Every field is written on every line, and the parser
// requires every one of them (fields it does not know are ignored). Version 1 (before the ledger
// and pruned logs) is still read: no audit lines, no audit count, attempts without the two
// pruned fields.
//
// Export: the read_* operations read one keyset page each, so a caller can stream; the line()
// functions make the text. The manifest's counts must match the lines: read the counts and every
// page inside ONE transaction (write_all does), or count the lines actually written and put
// the manifest together last (spool the body). Pages read in separate transactions of a live
// daemon can also miss a parent row that a later page refers to.
//
// Import: parse() checks everything it can without the database; the import_bundle operation
// then runs inside the caller's one transaction (the batch executor wraps it).
#include "storage/audit.hpp"
#include "storage/operations.hpp"

#include <cstddef>
#include <cstdio>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace nodecoord::storage::bundle {

inline constexpr const char* format_name = "nodecoord-bundle";
inline constexpr int64_t format_version = 2;        // what export writes
inline constexpr int64_t oldest_format_version = 1; // the oldest import reads

struct counts {
  int64_t nodes = 0;
  int64_t attempts = 0;
  int64_t logs = 0;
  int64_t jobs = 0;
  int64_t audit = 0;
  bool operator==(const counts&) const = default;
};

/// A log line with its attempt.
struct log_row {
  std::string attempt_id;
  log_entry entry;
};

// --- export ----------------------------------------------------------------------------------

/// Nodes by id after `after_id` (empty: from the start; otherwise a UUID), at most `limit`.
struct read_nodes {
  std::string after_id;
  int64_t limit = 1000;
  using result_type = std::vector<node_record>;
};

/// Attempts by id after `after_id`, at most `limit` (log_count / log_max_seq are read but not
/// exported).
struct read_attempts {
  std::string after_id;
  int64_t limit = 1000;
  using result_type = std::vector<attempt_record>;
};

/// Log lines by (attempt_id, seq) after (`after_attempt_id`, `after_seq`); empty
/// after_attempt_id: from the start. At most `limit`.
struct read_logs {
  std::string after_attempt_id;
  int64_t after_seq = -1;
  int64_t limit = 5000;
  using result_type = std::vector<log_row>;
};

/// Jobs by id after `after_id`, at most `limit`.
struct read_jobs {
  std::string after_id;
  int64_t limit = 1000;
  using result_type = std::vector<job_record>;
};

/// Ledger rows by id after `after_id` (0: from the start), at most `limit`.
struct read_audit {
  int64_t after_id = 0;
  int64_t limit = 1000;
  using result_type = std::vector<audit_record>;
};

/// Row counts of the five tables, for the manifest.
struct export_counts {
  using result_type = counts;
};

/// The manifest line (no trailing newline).
std::string manifest_line(const counts& n, const std::string& created_at);
/// One line each (no trailing newline). Throws std::runtime_error if a stored JSON document
/// (capabilities, meta, detail) is not valid JSON.
std::string line(const node_record& n);
std::string line(const attempt_record& a);
std::string line(const log_row& l);
std::string line(const job_record& j);
std::string line(const audit_record& a);

/// A whole bundle from inside the caller's transaction, so the counts match the lines and every
/// reference resolves: calls emit(line) for each line (no trailing newline), manifest first,
/// then nodes, attempts, logs, jobs and the ledger, each read in pages of `page` rows.
void write_all(op_context& c, const std::string& created_at, const std::function<void(const std::string&)>& emit,
               int64_t page = 1000);

// --- import ----------------------------------------------------------------------------------

/// A record and the line it came from (1-based).
template <class R>
struct numbered {
  size_t line = 0;
  R record;
};

struct manifest {
  int64_t version = 0;
  std::string created_at; // normalised (format_time)
  counts declared;
};

/// A bundle that passed every check parse() can make. Ids are lower case, times normalised to
/// "2026-01-09T12:00:00.000Z", JSON documents as compact text ("" for null).
struct parsed {
  manifest header;
  std::vector<numbered<node_record>> nodes;       // key_id, key_hash empty
  std::vector<numbered<attempt_record>> attempts; // log_count 0, log_max_seq -1
  std::vector<numbered<log_row>> logs;
  std::vector<numbered<job_record>> jobs;
  std::vector<numbered<audit_record>> audit;
};

struct parse_error {
  size_t line = 0;     // 1-based
  std::string message; // starts with "line N: ", e.g. `line 17: attempt: missing field "task_id"`
};

/// Validates the whole text before any SQL: the manifest first (format nodecoord-bundle,
/// version 1 or 2: a newer version is refused by name), then every line valid JSON with a known type,
/// every field present with its JSON type, statuses / sync states / streams / job types from
/// their sets, times that parse, UUIDs, no duplicate key (node id or name, attempt id, (attempt
/// id, seq), job id, audit id), the manifest counts equal to the lines. A reference to a node or attempt
/// that is not in the bundle is left for import_bundle to look up in the database. An empty line
/// is allowed only as the trailing newline (a trailing "\r" is ignored).
std::variant<parsed, parse_error> parse(std::string_view text);

/// Imports a parsed bundle, idempotently: nodes, attempts and jobs by id, logs by (attempt_id,
/// seq). A row whose key exists is `skipped` if its exported fields equal the bundle's (as
/// exported, or as this import would have written them), else `conflicting` and left untouched
/// (never overwritten); a node whose name exists under another id is conflicting, and so is
/// every attempt, log and job of a bundle node that is conflicting that way (they cannot be
/// stored without it). A log line is a row of its own: a new line of an attempt that is
/// conflicting (but stored) is inserted.
///
/// What is written: nodes `offline` (`disabled` when disabled_at is set), with a fresh random
/// key_id and an empty key_hash, so they cannot authenticate until an operator rotates the key;
/// attempts `pending_backfill` as `partial` without backfill_request_id (no request survives);
/// jobs `queued` / `running` as `abandoned`, finished_at = the manifest's created_at when they
/// had none, error "imported while <status>" when they had none. Log lines keep log_count and
/// log_max_seq as the live log insert does (log_count counts the stored lines, log_max_seq is
/// the highest stored seq); sync_state and updated_at of an existing attempt are not touched.
///
/// A reference to a node or attempt that is neither in the bundle nor in the database throws
/// std::runtime_error("line N: …") so the caller's transaction rolls back. dry_run runs the same
/// statements inside SAVEPOINT nc_bundle_dry and rolls back to it: the counts are exact and
/// nothing changes.
struct import_bundle {
  static constexpr bool own_transaction = true; // storage/op_queue.hpp
  std::shared_ptr<const parsed> bundle;
  bool dry_run = false;
  struct result_type {
    struct kind {
      int64_t inserted = 0, skipped = 0, conflicting = 0;
      bool operator==(const kind&) const = default;
    } nodes, attempts, logs, jobs, audit;
    bool operator==(const result_type&) const = default;
  };
};

/// The whole bundle (write_all) into `out`, inside the caller's one transaction, so the
/// manifest's counts and every reference agree with the lines (the admin API spools the export
/// to a temporary file and streams it from there).
struct export_file {
  static constexpr bool own_transaction = true; // storage/op_queue.hpp
  std::shared_ptr<std::FILE> out;
  std::string created_at;
  using result_type = counts;
};

} // namespace nodecoord::storage::bundle

namespace nodecoord::storage {

// In storage:: with every other execute() (callers name it storage::execute).
bundle::read_nodes::result_type execute(op_context&, const bundle::read_nodes&);
bundle::read_attempts::result_type execute(op_context&, const bundle::read_attempts&);
bundle::read_logs::result_type execute(op_context&, const bundle::read_logs&);
bundle::read_jobs::result_type execute(op_context&, const bundle::read_jobs&);
bundle::read_audit::result_type execute(op_context&, const bundle::read_audit&);
bundle::export_counts::result_type execute(op_context&, const bundle::export_counts&);
bundle::import_bundle::result_type execute(op_context&, const bundle::import_bundle&);
bundle::export_file::result_type execute(op_context&, const bundle::export_file&);

} // namespace nodecoord::storage
