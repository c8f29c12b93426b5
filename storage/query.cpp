#include "storage/query.hpp"

#include <stdexcept>

namespace nodecoord::storage {

query& query::bind(const std::string& name, std::string value) {
  strings_.push_back(std::move(value));
  indicators_.push_back(soci::i_ok);
  bindings_.push_back({name, false, strings_.size() - 1});
  return *this;
}

query& query::bind_nullable(const std::string& name, std::string value) {
  bool null = value.empty();
  bind(name, std::move(value));
  indicators_.back() = null ? soci::i_null : soci::i_ok;
  return *this;
}

query& query::bind(const std::string& name, int64_t value) {
  ints_.push_back(value);
  indicators_.push_back(soci::i_ok);
  bindings_.push_back({name, true, ints_.size() - 1});
  return *this;
}

std::string query::in_list(const std::string& prefix, size_t n) {
  std::string out = "(";
  for (size_t i = 0; i < n; ++i) {
    if (i)
      out += ", ";
    out += ':' + prefix + std::to_string(i);
  }
  return out + ")";
}

query& query::bind_list(const std::string& prefix, const std::vector<std::string>& values) {
  for (size_t i = 0; i < values.size(); ++i)
    bind(prefix + std::to_string(i), values[i]);
  return *this;
}

void query::prepare(soci::statement& st) {
  st.alloc();
  st.prepare(text_, soci::details::st_one_time_query);
  // indicators_ is parallel to bindings_ (one push per bind).
  for (size_t i = 0; i < bindings_.size(); ++i) {
    auto& b = bindings_[i];
    if (b.is_int)
      st.exchange(soci::use(ints_[b.index], indicators_[i], b.name));
    else
      st.exchange(soci::use(strings_[b.index], indicators_[i], b.name));
  }
}

long long query::exec() {
  soci::statement st(sql_);
  prepare(st);
  st.define_and_bind();
  st.execute(true);
  return st.get_affected_rows();
}

std::string col_str(const soci::row& r, size_t i) {
  if (r.get_indicator(i) == soci::i_null)
    return {};
  switch (r.get_properties(i).get_data_type()) {
    case soci::dt_string: return r.get<std::string>(i);
    case soci::dt_integer: return std::to_string(r.get<int>(i));
    case soci::dt_long_long: return std::to_string(r.get<long long>(i));
    case soci::dt_unsigned_long_long: return std::to_string(r.get<unsigned long long>(i));
    case soci::dt_double: return std::to_string(r.get<double>(i));
    default: throw std::runtime_error("column " + r.get_properties(i).get_name() + ": unexpected type");
  }
}

int64_t col_int(const soci::row& r, size_t i, int64_t if_null) {
  if (r.get_indicator(i) == soci::i_null)
    return if_null;
  switch (r.get_properties(i).get_data_type()) {
    case soci::dt_integer: return r.get<int>(i);
    case soci::dt_long_long: return r.get<long long>(i);
    case soci::dt_unsigned_long_long: return static_cast<int64_t>(r.get<unsigned long long>(i));
    case soci::dt_double: return static_cast<int64_t>(r.get<double>(i));
    case soci::dt_string: return std::stoll(r.get<std::string>(i));
    default: throw std::runtime_error("column " + r.get_properties(i).get_name() + ": not an integer");
  }
}

std::vector<std::vector<std::string>> chunks(const std::vector<std::string>& values, size_t n) {
  std::vector<std::vector<std::string>> out;
  for (size_t i = 0; i < values.size(); i += n)
    out.emplace_back(values.begin() + i, values.begin() + std::min(values.size(), i + n));
  return out;
}

} // namespace nodecoord::storage
