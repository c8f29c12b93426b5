// nodecoordctl: operator commands. Node provisioning works directly on the configured database
// until the admin HTTP API exists (issue 6 moves these commands onto it). Safe beside a running
// daemon: SQLite writers wait for each other; disabling a node closes its session within the
// registry's poll interval (about 2 s).
#include "common/api_key.hpp"
#include "common/clock.hpp"
#include "config/config.hpp"
#include "nodecoord/version.hpp"
#include "storage/batch_executor.hpp"
#include "storage/database.hpp"
#include "storage/operations.hpp"

#include <CLI/App.hpp>
#include <CLI/Config.hpp>
#include <CLI/Formatter.hpp>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <iomanip>
#include <iostream>

using namespace nodecoord;

namespace {

// Exit codes scripts can rely on.
constexpr int exit_ok = 0;
constexpr int exit_failure = 1;   // database or configuration problem
constexpr int exit_usage = 2;     // bad command line
constexpr int exit_conflict = 3;  // the name is taken
constexpr int exit_not_found = 4; // no such node

struct context {
  std::unique_ptr<storage::database> db;
  std::unique_ptr<storage::batch_executor> exec;

  template <class Op>
  typename Op::result_type run(const Op& op) {
    typename Op::result_type result{};
    storage::batch_item item;
    item.run = [&](storage::op_context& c) { result = storage::execute(c, op); };
    auto rep = exec->execute(std::span<storage::batch_item>(&item, 1));
    if (rep.stop != storage::stop_reason::none)
      throw std::runtime_error("database unavailable: " + rep.stop_message);
    if (!rep.errors[0].empty())
      throw std::runtime_error(rep.errors[0]);
    return result;
  }
};

context open_database(const std::string& config_path, const std::string& state_dir_flag) {
  auto cfg = config::default_config();
  std::string path = config_path.empty() ? "/etc/nodecoord/nodecoord.toml" : config_path;
  if (!config_path.empty() || std::filesystem::exists(path)) {
    auto res = config::load_file(path);
    if (!res.ok()) {
      for (auto& e : res.errors)
        std::cerr << e.to_string() << "\n";
      throw std::runtime_error("configuration errors in " + path);
    }
    cfg = res.config;
  }
  auto state_dir = config::resolve_state_dir(state_dir_flag);
  // An operator's shell has no $STATE_DIRECTORY: find the systemd install's state directory.
  if (state_dir.empty() && std::filesystem::exists("/var/lib/nodecoord") && config_path.empty())
    state_dir = "/var/lib/nodecoord";
  auto url = storage::parse_storage_url(cfg.storage.url, state_dir, cfg.storage.connect_timeout);
  context ctx;
  ctx.db = std::make_unique<storage::database>(url, system_now);
  ctx.db->connect();
  ctx.db->migrate();
  ctx.exec = std::make_unique<storage::batch_executor>(*ctx.db);
  return ctx;
}

nlohmann::json node_json(const storage::node_record& n) {
  return {{"id", n.id},
          {"name", n.name},
          {"status", n.status},
          {"session_epoch", n.session_epoch},
          {"connected_at", n.connected_at},
          {"disconnected_at", n.disconnected_at},
          {"disconnect_reason", n.disconnect_reason},
          {"last_seen_at", n.last_seen_at},
          {"created_at", n.created_at},
          {"disabled_at", n.disabled_at}};
}

bool valid_node_name(const std::string& name) {
  if (name.empty() || name.size() > 255)
    return false;
  for (unsigned char c : name)
    if (!(std::isalnum(c) || c == '-' || c == '_' || c == '.'))
      return false;
  return true;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"nodecoordctl " + std::string(version) + ": operate nodecoord"};
  std::string config_path, state_dir;
  bool json = false;
  app.add_option("-c,--config", config_path, "nodecoordd configuration file (default /etc/nodecoord/nodecoord.toml)");
  app.add_option("--state-dir", state_dir, "directory for relative SQLite paths (as for nodecoordd)");
  app.add_flag("--json", json, "machine-readable output");
  app.require_subcommand(1);
  auto* node = app.add_subcommand("node", "provision nodes");
  node->require_subcommand(1);
  std::string name;
  auto* add = node->add_subcommand("add", "create a node and print its API key (shown only once)");
  add->add_option("NAME", name, "node name (letters, digits, - _ .)")->required();
  auto* list = node->add_subcommand("list", "list nodes");
  auto* disable = node->add_subcommand("disable", "disable a node (closes its session)");
  disable->add_option("NAME", name)->required();
  auto* enable = node->add_subcommand("enable", "re-enable a disabled node");
  enable->add_option("NAME", name)->required();
  auto* rotate = node->add_subcommand("rotate-key", "replace a node's API key (the old one stops working)");
  rotate->add_option("NAME", name)->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0)
      return app.exit(e);
    std::cerr << "nodecoordctl: " << e.what() << "\nRun 'nodecoordctl --help' for usage.\n";
    return exit_usage;
  }
  try {
    if (add->parsed() && !valid_node_name(name)) {
      std::cerr << "nodecoordctl: invalid node name '" << name << "' (letters, digits, - _ . only, at most 255)\n";
      return exit_usage;
    }
    auto ctx = open_database(config_path, state_dir);
    if (add->parsed()) {
      auto key = generate_api_key();
      auto r = ctx.run(storage::node_create{name, "", key.key_id, key.key_hash});
      if (!r.created) {
        std::cerr << "nodecoordctl: a node named '" << name << "' already exists\n";
        return exit_conflict;
      }
      if (json)
        std::cout << nlohmann::json{{"node", node_json(r.node)}, {"key", key.key}}.dump() << "\n";
      else
        std::cout << "created node " << name << " (" << r.node.id << ")\n"
                  << "key: " << key.key << "\n"
                  << "The key is shown only this once; store it on the node (e.g. in its key file).\n";
      return exit_ok;
    }
    if (list->parsed()) {
      auto nodes = ctx.run(storage::node_list{});
      if (json) {
        auto arr = nlohmann::json::array();
        for (auto& n : nodes)
          arr.push_back(node_json(n));
        std::cout << arr.dump() << "\n";
        return exit_ok;
      }
      std::cout << std::left << std::setw(24) << "NAME" << std::setw(10) << "STATUS" << std::setw(7) << "EPOCH"
                << std::setw(26) << "LAST SEEN" << "ID\n";
      for (auto& n : nodes)
        std::cout << std::setw(24) << n.name << std::setw(10) << n.status << std::setw(7) << n.session_epoch
                  << std::setw(26) << (n.last_seen_at.empty() ? "-" : n.last_seen_at) << n.id << "\n";
      return exit_ok;
    }
    storage::node_disable::result_type r;
    std::string done;
    std::string key_text;
    if (disable->parsed()) {
      r = ctx.run(storage::node_disable{name});
      done = "disabled";
    } else if (enable->parsed()) {
      r = ctx.run(storage::node_enable{name});
      done = "enabled";
    } else {
      auto key = generate_api_key();
      r = ctx.run(storage::node_set_key{name, key.key_id, key.key_hash});
      done = "has a new key";
      key_text = key.key;
    }
    if (!r.found) {
      std::cerr << "nodecoordctl: no node named '" << name << "'\n";
      return exit_not_found;
    }
    if (json) {
      nlohmann::json out{{"node", node_json(r.node)}};
      if (!key_text.empty())
        out["key"] = key_text;
      std::cout << out.dump() << "\n";
    } else {
      std::cout << "node " << name << " " << done << "\n";
      if (!key_text.empty())
        std::cout << "key: " << key_text << "\nThe old key no longer authenticates; the key is shown only this once.\n";
    }
    return exit_ok;
  } catch (const std::exception& e) {
    std::cerr << "nodecoordctl: " << e.what() << "\n";
    return exit_failure;
  }
}
