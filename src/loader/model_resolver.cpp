#include "loader/model_resolver.h"

#include <cstdlib>
#include <filesystem>

#include "util/error.h"

namespace cvllm {
namespace fs = std::filesystem;

std::string cvllm_cache_dir() {
  if (const char* dir = std::getenv("CVLLM_CACHE_DIR"); dir && *dir) return dir;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return std::string(xdg) + "/cvllm";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.cache/cvllm";
}

std::string default_model_path() { return cvllm_cache_dir() + "/" + kDefaultModelFile; }

ResolvedModel resolve_model(const std::string& model) {
  std::vector<std::string> searched;
  auto try_path = [&](const fs::path& p, ResolvedModel& out) {
    searched.push_back(p.string());
    std::error_code ec;
    if (fs::is_regular_file(p, ec)) {
      out = {ModelFormat::kGguf, p.string()};
      return true;
    }
    if (fs::is_directory(p, ec)) {
      out = {ModelFormat::kHuggingFaceDir, p.string()};
      return true;
    }
    return false;
  };
  ResolvedModel found;
  if (model.empty()) {
    if (try_path(default_model_path(), found)) return found;
    throw ValueError(cat("the default model was not found at ", default_model_path(),
                         "; run scripts/setup.sh to fetch it, or pass --model"));
  }
  if (try_path(model, found)) return found;
  // A bare file name may refer to a model in the cvllm cache folder.
  if (fs::path(model).filename() == fs::path(model) && try_path(fs::path(cvllm_cache_dir()) / model, found)) {
    return found;
  }
  std::string where;
  for (const std::string& s : searched) where += "\n  " + s;
  throw ValueError(cat("model '", model, "' not found; searched:", where));
}

}  // namespace cvllm
