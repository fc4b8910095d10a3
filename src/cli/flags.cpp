#include "cli/flags.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "util/error.h"

namespace cvllm::cli {
namespace {

std::string normalize(std::string name) {
  std::replace(name.begin(), name.end(), '_', '-');
  return name;
}

std::string usage(const std::string& command, const std::set<std::string>& value_flags,
                  const std::set<std::string>& bool_flags) {
  std::string text = cat("usage: cvllm", command, " [flags]\n\nflags:\n");
  std::set<std::string> all(value_flags);
  all.insert(bool_flags.begin(), bool_flags.end());
  for (const std::string& name : all) {
    text += value_flags.count(name) ? cat("  --", name, " VALUE\n") : cat("  --[no-]", name, "\n");
  }
  return text;
}

}  // namespace

Flags::Flags(int argc, char** argv, int first, const std::set<std::string>& value_flags,
             const std::set<std::string>& bool_flags) {
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::string command;  // the words before the flags: "serve", "bench latency"
      for (int w = 1; w < first && w < argc; ++w) command += cat(" ", argv[w]);
      throw HelpRequested(usage(command, value_flags, bool_flags));
    }
    if (arg.rfind("--", 0) != 0 || arg == "--") {
      positional_.push_back(arg);
      continue;
    }
    std::string name = normalize(arg.substr(2));
    std::optional<std::string> inline_value;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      inline_value = arg.substr(2 + eq + 1);
      name = name.substr(0, eq);
    }
    if (value_flags.count(name)) {
      if (!inline_value) {
        if (i + 1 >= argc) throw ValueError(cat("flag --", name, " needs a value"));
        inline_value = argv[++i];
      }
      values_[name].push_back(*inline_value);
    } else if (bool_flags.count(name)) {
      if (inline_value) throw ValueError(cat("flag --", name, " takes no value"));
      bools_[name] = true;
    } else if (name.rfind("no-", 0) == 0 && bool_flags.count(name.substr(3))) {
      bools_[name.substr(3)] = false;
    } else {
      throw ValueError(cat("unknown flag --", name));
    }
  }
}

std::optional<std::string> Flags::get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end() || it->second.empty()) return std::nullopt;
  return it->second.back();
}

std::vector<std::string> Flags::get_all(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

std::optional<int64_t> Flags::get_int(const std::string& name) const {
  std::optional<std::string> v = get(name);
  if (!v) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  long long x = std::strtoll(v->c_str(), &end, 10);
  if (errno != 0 || end == v->c_str() || *end != '\0') {
    throw ValueError(cat("flag --", name, " expects an integer, got '", *v, "'"));
  }
  return x;
}

std::optional<double> Flags::get_double(const std::string& name) const {
  std::optional<std::string> v = get(name);
  if (!v) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  double x = std::strtod(v->c_str(), &end);
  if (errno != 0 || end == v->c_str() || *end != '\0') {
    throw ValueError(cat("flag --", name, " expects a number, got '", *v, "'"));
  }
  return x;
}

bool Flags::get_bool(const std::string& name, bool fallback) const {
  auto it = bools_.find(name);
  return it == bools_.end() ? fallback : it->second;
}

}  // namespace cvllm::cli
