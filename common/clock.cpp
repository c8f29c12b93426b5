#include "common/clock.hpp"

#include <cctype>
#include <cstdio>

namespace nodecoord {

sys_time system_now() {
  return std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
}

std::string format_time(sys_time t) {
  using namespace std::chrono;
  auto day = floor<days>(t);
  year_month_day ymd{day};
  hh_mm_ss hms{t - day};
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ", int(ymd.year()), unsigned(ymd.month()),
                unsigned(ymd.day()), int(hms.hours().count()), int(hms.minutes().count()), int(hms.seconds().count()),
                int(hms.subseconds().count()));
  return buf;
}

namespace {

bool digits(std::string_view s, size_t pos, size_t n, int& out) {
  if (pos + n > s.size())
    return false;
  out = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (!std::isdigit(static_cast<unsigned char>(s[i])))
      return false;
    out = out * 10 + (s[i] - '0');
  }
  return true;
}

} // namespace

std::optional<sys_time> parse_time(std::string_view s) {
  using namespace std::chrono;
  int y, mo, d, h, mi, sec;
  if (!digits(s, 0, 4, y) || s.size() < 19 || s[4] != '-' || !digits(s, 5, 2, mo) || s[7] != '-' || !digits(s, 8, 2, d)
      || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || !digits(s, 11, 2, h) || s[13] != ':' || !digits(s, 14, 2, mi)
      || s[16] != ':' || !digits(s, 17, 2, sec))
    return std::nullopt;
  year_month_day ymd{year{y}, month{unsigned(mo)}, day{unsigned(d)}};
  if (!ymd.ok() || h > 23 || mi > 59 || sec > 60)
    return std::nullopt;
  size_t pos = 19;
  int ms = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    int n = 0;
    while (pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos]))) {
      if (n < 3)
        ms = ms * 10 + (s[pos] - '0');
      ++n;
      ++pos;
    }
    if (n == 0)
      return std::nullopt;
    for (; n < 3; ++n)
      ms *= 10;
  }
  int offset_min = 0;
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    int sign = s[pos] == '-' ? -1 : 1;
    int oh = 0, om = 0;
    if (!digits(s, pos + 1, 2, oh))
      return std::nullopt;
    pos += 3;
    bool colon = pos < s.size() && s[pos] == ':';
    if (colon)
      ++pos;
    if (colon || pos < s.size()) { // "+01:" alone is malformed; "+01" and "+0130" are fine
      if (!digits(s, pos, 2, om))
        return std::nullopt;
      pos += 2;
    }
    if (oh > 23 || om > 59)
      return std::nullopt;
    offset_min = sign * (oh * 60 + om);
  } else {
    return std::nullopt; // a time without a zone is ambiguous
  }
  if (pos != s.size())
    return std::nullopt;
  auto t = sys_days{ymd} + hours{h} + minutes{mi} + seconds{sec} + milliseconds{ms} - minutes{offset_min};
  // Years 0001-9999 in UTC, what both backends store and format_time writes back (PostgreSQL
  // has no year 0; five-digit years do not sort as text).
  auto utc_year = int(year_month_day{floor<days>(t)}.year());
  if (utc_year < 1 || utc_year > 9999)
    return std::nullopt;
  return time_point_cast<milliseconds>(t);
}

} // namespace nodecoord
