// The configuration's files: reading the TOML file (then load_string parses it), the admin token
// file, the state directory, and how an error is printed. Split from config.cpp.
#include "config/config.hpp"

#include "common/ids.hpp"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <iterator>

namespace nodecoord::config {

std::string config_error::to_string() const {
  std::string location = file;
  if (line > 0) {
    if (!location.empty())
      location += ':';
    location += std::to_string(line);
    if (column > 0)
      location += ':' + std::to_string(column);
  }
  std::string out;
  for (const std::string* part : std::initializer_list<const std::string*>{&location, &key, &message}) {
    if (part->empty())
      continue;
    if (!out.empty())
      out += ": ";
    out += *part;
  }
  return out;
}

load_result load_file(const std::string& path) {
  std::string text;
  errno = 0;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  int error = f ? 0 : (errno != 0 ? errno : EIO);
  if (f) {
    char buffer[8192];
    size_t n = 0;
    constexpr size_t max_size = 16 * 1024 * 1024; // no sane configuration is this large (think /dev/zero)
    while (text.size() <= max_size && (n = std::fread(buffer, 1, sizeof buffer, f)) > 0)
      text.append(buffer, n);
    if (std::ferror(f))
      error = errno != 0 ? errno : EIO;
    else if (text.size() > max_size)
      error = EFBIG;
    std::fclose(f);
  }
  if (error != 0) {
    load_result result{default_config(), {}};
    result.errors.push_back(
      config_error{path, 0, 0, {}, "cannot read the configuration file: " + std::string{std::strerror(error)}});
    return result;
  }
  return load_string(text, path);
}

std::string resolve_state_dir(const std::string& flag) {
  if (!flag.empty())
    return flag;
  if (const char* s = std::getenv("STATE_DIRECTORY"); s && *s) {
    std::string dirs = s;
    return dirs.substr(0, dirs.find(':'));
  }
  return {};
}

std::optional<std::string> resolve_instance_id(const std::string& configured, const std::string& state_dir,
                                               std::string& why) {
  if (!configured.empty())
    return configured;
  auto path = (state_dir.empty() ? std::string(".") : state_dir) + "/instance_id";
  if (std::ifstream in(path); in) {
    std::string id;
    std::getline(in, id);
    while (!id.empty() && (id.back() == '\r' || id.back() == ' '))
      id.pop_back();
    if (!id.empty() && id.size() <= 128)
      return id;
    why = path + ": expected one instance id (delete the file to make a new one)";
    return std::nullopt;
  }
  // First start: a new id, written whole or not at all.
  auto id = new_uuid();
  auto tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << id << "\n";
    if (!out.flush()) {
      why = "cannot write " + tmp + " (" + std::strerror(errno)
            + "); set server.instance_id or make the state "
              "directory writable";
      return std::nullopt;
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    why = "cannot create " + path + " (" + std::strerror(errno) + ")";
    return std::nullopt;
  }
  return id;
}

std::optional<std::string> read_admin_token(const std::string& path, std::string& why) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    why = "admin.token_file: cannot read " + path + " (" + std::strerror(errno) + ")";
    return std::nullopt;
  }
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto first = text.find_first_not_of(" \t\r\n");
  auto last = text.find_last_not_of(" \t\r\n");
  std::string token = first == std::string::npos ? "" : text.substr(first, last - first + 1);
  if (token.size() < 16) {
    why = "admin.token_file: " + path + " holds " + (token.empty() ? "no token" : "a token shorter than 16 characters")
          + "; put a long random token in it (e.g. openssl rand -hex 32)";
    return std::nullopt;
  }
  return token;
}

} // namespace nodecoord::config
