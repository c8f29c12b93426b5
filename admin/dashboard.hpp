#pragma once
// The dashboard page (admin/dashboard.html), compiled in: the daemon serves it at GET / with no
// files to install and no build step on the server.
#include <string>

namespace nodecoord::admin {

const std::string& dashboard_html();

} // namespace nodecoord::admin
