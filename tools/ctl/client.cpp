#include "tools/ctl/client.hpp"

#include "config/config.hpp"

#include <httplib.h>

#include <cstdlib>
#include <filesystem>

namespace nodecoord::ctl {

namespace {

constexpr const char* default_config_path = "/etc/nodecoord/nodecoord.toml";

int exit_for_status(int status) {
  if (status == 400 || status == 405 || status == 413)
    return exit_usage;
  if (status == 401 || status == 403)
    return exit_auth;
  if (status == 404)
    return exit_not_found;
  if (status == 409)
    return exit_conflict;
  return exit_failure;
}

std::string read_token(const std::string& path) {
  std::string why;
  auto token = config::read_admin_token(path, why);
  if (!token)
    throw api_failure(exit_usage, "token_file", why);
  return *token;
}

void parse_url(const std::string& url, target& t) {
  std::string rest = url;
  if (rest.rfind("http://", 0) == 0) {
    rest = rest.substr(7);
  } else if (rest.rfind("https://", 0) == 0) {
    rest = rest.substr(8);
    t.https = true;
  } else if (rest.find("://") != std::string::npos) {
    throw api_failure(exit_usage, "admin_url",
                      "the admin URL must be http://HOST:PORT or https://HOST:PORT, not " + url);
  }
  while (!rest.empty() && rest.back() == '/')
    rest.pop_back();
  auto colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == rest.size())
    throw api_failure(exit_usage, "admin_url", "the admin URL needs a host and a port: " + url);
  t.host = rest.substr(0, colon);
  if (t.host.size() > 2 && t.host.front() == '[' && t.host.back() == ']')
    t.host = t.host.substr(1, t.host.size() - 2);
  try {
    size_t used = 0;
    t.port = std::stoi(rest.substr(colon + 1), &used);
    if (used != rest.size() - colon - 1 || t.port <= 0 || t.port > 65535)
      throw std::invalid_argument("port");
  } catch (const std::exception&) {
    throw api_failure(exit_usage, "admin_url", "bad port in the admin URL: " + url);
  }
  t.display = (t.https ? "https://" : "http://") + rest;
}

} // namespace

target resolve_target(const std::string& admin_flag, const std::string& token_file_flag, const std::string& config_path,
                      const std::string& ca_file_flag) {
  target t;
  std::string url = admin_flag;
  if (url.empty())
    if (const char* env = std::getenv("NODECOORD_ADMIN"))
      url = env;
  std::string token_file = token_file_flag;
  std::string cfg_path = config_path.empty() ? default_config_path : config_path;
  bool use_config = !config_path.empty() || std::filesystem::exists(cfg_path);
  config::daemon_config cfg = config::default_config();
  if (use_config && (url.empty() || token_file.empty())) {
    auto res = config::load_file(cfg_path);
    if (!res.ok()) {
      std::string msg = "configuration errors in " + cfg_path + ":";
      for (auto& e : res.errors)
        msg += "\n  " + e.to_string();
      throw api_failure(exit_usage, "config", msg);
    }
    cfg = res.config;
  }
  if (url.empty()) {
    auto host = cfg.admin.listen.host;
    if (host == "0.0.0.0")
      host = "127.0.0.1";
    else if (host == "::")
      host = "::1";
    url = (cfg.admin.tls.enabled() ? "https://" : "http://")
          + (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":"
          + std::to_string(cfg.admin.listen.port);
  }
  parse_url(url, t);
  t.ca_file = ca_file_flag;
  if (t.ca_file.empty())
    if (const char* env = std::getenv("NODECOORD_CA_FILE"))
      t.ca_file = env;
  if (!token_file.empty())
    t.token = read_token(token_file);
  else if (const char* env = std::getenv("NODECOORD_ADMIN_TOKEN"))
    t.token = env;
  else if (!cfg.admin.token_file.empty())
    t.token = read_token(cfg.admin.token_file);
  return t;
}

client::client(target t) : t_(std::move(t)) {}

namespace {

httplib::Client make_client(const target& t) {
  auto host = t.host.find(':') != std::string::npos ? "[" + t.host + "]" : t.host;
  httplib::Client cli((t.https ? "https://" : "http://") + host + ":" + std::to_string(t.port));
  if (t.https) {
    cli.enable_server_certificate_verification(true);
    if (!t.ca_file.empty())
      cli.set_ca_cert_path(t.ca_file.c_str());
  }
  cli.set_connection_timeout(5, 0);
  cli.set_read_timeout(120, 0);
  cli.set_write_timeout(120, 0);
  if (!t.token.empty())
    cli.set_bearer_token_auth(t.token);
  return cli;
}

[[noreturn]] void unreachable(const target& t, httplib::Error e) {
  if (e == httplib::Error::SSLServerVerification || e == httplib::Error::SSLConnection
      || e == httplib::Error::SSLLoadingCerts)
    throw api_failure(exit_failure, "tls",
                      "cannot reach the admin API at " + t.display + " over TLS (" + httplib::to_string(e)
                        + "); check --ca-file (or NODECOORD_CA_FILE) and that the certificate names " + t.host);
  throw api_failure(exit_failure, "unreachable",
                    "cannot reach the admin API at " + t.display + " (" + httplib::to_string(e)
                      + "); is nodecoordd running? (--admin URL or NODECOORD_ADMIN)");
}

[[noreturn]] void error_answer(int status, const std::string& body) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_discarded() && j.is_object() && j.contains("error") && j["error"].is_object()) {
    auto& e = j["error"];
    throw api_failure(exit_for_status(status), e.value("code", "error"), e.value("message", body));
  }
  throw api_failure(exit_for_status(status), "http_" + std::to_string(status),
                    "HTTP " + std::to_string(status) + (body.empty() ? "" : ": " + body.substr(0, 200)));
}

} // namespace

nlohmann::json client::call(const std::string& method, const std::string& path, const std::string& body,
                            const std::string& content_type) {
  auto cli = make_client(t_);
  httplib::Result res{nullptr, httplib::Error::Unknown};
  if (method == "GET")
    res = cli.Get(path);
  else if (method == "POST")
    res = cli.Post(path, body, content_type);
  else if (method == "DELETE")
    res = cli.Delete(path, httplib::Headers{}, std::string{}, "application/json");
  else
    throw std::logic_error("unsupported method " + method);
  if (!res)
    unreachable(t_, res.error());
  auto j = nlohmann::json::parse(res->body, nullptr, false);
  if (res->status >= 400 || j.is_discarded() || !j.is_object() || !j.value("ok", false))
    error_answer(res->status, res->body);
  return j["data"];
}

void client::download(const std::string& path, const std::function<bool(const char*, size_t)>& sink) {
  auto cli = make_client(t_);
  int status = 0;
  std::string error_body;
  auto res = cli.Get(
    path, httplib::Headers{},
    [&](const httplib::Response& r) {
      status = r.status;
      return true;
    },
    [&](const char* data, size_t n) {
      if (status >= 400) {
        error_body.append(data, n);
        return true;
      }
      return sink(data, n);
    });
  if (!res)
    unreachable(t_, res.error());
  if (res->status >= 400)
    error_answer(res->status, error_body);
}

std::string url_encode(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == ',') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

} // namespace nodecoord::ctl
