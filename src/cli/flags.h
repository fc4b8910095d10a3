// Command-line flags spelled as vLLM spells them (`--max-model-len`, `--top-p`). Accepts
// `--flag value` and `--flag=value`; `-` and `_` are interchangeable; a flag may repeat (e.g.
// --stop). Unknown flags and malformed values are errors naming the flag; `--help` lists them.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace cvllm::cli {

// Thrown by Flags when `--help`/`-h` is among the arguments; what() is the usage text listing the
// command's flags (main prints it and exits 0).
class HelpRequested : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Flags {
 public:
  // `value_flags` take a value; `bool_flags` take none (`--no-x` sets x false where allowed).
  Flags(int argc, char** argv, int first, const std::set<std::string>& value_flags,
        const std::set<std::string>& bool_flags);

  std::optional<std::string> get(const std::string& name) const;
  std::vector<std::string> get_all(const std::string& name) const;
  std::optional<int64_t> get_int(const std::string& name) const;
  std::optional<double> get_double(const std::string& name) const;
  bool get_bool(const std::string& name, bool fallback = false) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::map<std::string, std::vector<std::string>> values_;
  std::map<std::string, bool> bools_;
  std::vector<std::string> positional_;
};

}  // namespace cvllm::cli
