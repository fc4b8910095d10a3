#include "loader/model_resolver.h"

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <vector>

#include "util/error.h"

namespace cvllm {
namespace fs = std::filesystem;
namespace {

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : "";
}

std::string home_cache() {
  std::string xdg = env_or_empty("XDG_CACHE_HOME");
  if (!xdg.empty()) return xdg;
  std::string home = env_or_empty("HOME");
  return (home.empty() ? std::string(".") : home) + "/.cache";
}

// "org/name" (or "name"): letters, digits and -_. only, no "..", so a hub id never escapes the
// cache folder.
bool looks_like_hub_id(const std::string& model) {
  size_t slash = model.find('/');
  if (slash != model.rfind('/') || slash == 0 || slash + 1 == model.size()) return false;
  if (model.find("..") != std::string::npos || model.front() == '.') return false;
  for (char c : model) {
    bool ok =
        std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '/';
    if (!ok) return false;
  }
  return true;
}

std::string read_ref(const fs::path& ref) {
  std::ifstream in(ref);
  std::string commit;
  std::getline(in, commit);
  while (!commit.empty() && std::isspace(static_cast<unsigned char>(commit.back())))
    commit.pop_back();
  return commit;
}

bool is_plain_name(const std::string& s) {
  return !s.empty() && s != "." && s != ".." && s.find('/') == std::string::npos;
}

// The snapshot folder of `repo_dir` for `revision`; records each path it looked at.
std::optional<fs::path> find_snapshot(const fs::path& repo_dir, const std::string& revision,
                                      std::vector<std::string>& searched) {
  std::error_code ec;
  const fs::path snapshots = repo_dir / "snapshots";
  const std::string rev = revision.empty() ? "main" : revision;
  if (is_plain_name(rev)) {
    fs::path ref = repo_dir / "refs" / rev;
    searched.push_back(ref.string());
    if (fs::is_regular_file(ref, ec)) {
      std::string commit = read_ref(ref);
      if (is_plain_name(commit)) {  // a ref never points outside snapshots/
        fs::path snap = snapshots / commit;
        searched.push_back(snap.string());
        if (fs::is_directory(snap, ec)) return snap;
      }
    }
    fs::path by_commit = snapshots / rev;
    searched.push_back(by_commit.string());
    if (fs::is_directory(by_commit, ec)) return by_commit;
  }
  if (revision.empty() && fs::is_directory(snapshots, ec)) {
    // No refs/main (a cache filled by hand or by another tool): use the only snapshot, if one.
    std::vector<fs::path> all;
    for (const fs::directory_entry& e : fs::directory_iterator(snapshots, ec)) {
      if (e.is_directory(ec)) all.push_back(e.path());
    }
    if (all.size() == 1) return all.front();
  }
  return std::nullopt;
}

}  // namespace

std::string cvllm_cache_dir() {
  std::string dir = env_or_empty("CVLLM_CACHE_DIR");
  if (!dir.empty()) return dir;
  return home_cache() + "/cvllm";
}

std::string default_model_path() {
  return cvllm_cache_dir() + "/" + kDefaultModelFile;
}

std::string hf_hub_cache_dir() {
  std::string hub = env_or_empty("HF_HUB_CACHE");
  if (!hub.empty()) return hub;
  std::string hf_home = env_or_empty("HF_HOME");
  if (!hf_home.empty()) return hf_home + "/hub";
  return home_cache() + "/huggingface/hub";
}

ResolvedModel resolve_model(const std::string& model, const std::string& revision) {
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
  if (fs::path(model).filename() == fs::path(model) &&
      try_path(fs::path(cvllm_cache_dir()) / model, found)) {
    return found;
  }
  if (looks_like_hub_id(model)) {
    std::string folder = "models--" + model;
    for (size_t pos = folder.find('/'); pos != std::string::npos; pos = folder.find('/')) {
      folder.replace(pos, 1, "--");
    }
    fs::path repo_dir = fs::path(hf_hub_cache_dir()) / folder;
    if (std::optional<fs::path> snap = find_snapshot(repo_dir, revision, searched)) {
      return {ModelFormat::kHuggingFaceDir, snap->string()};
    }
  }
  std::string where;
  for (const std::string& s : searched) where += "\n  " + s;
  std::string rev = revision.empty() ? "" : cat(" (revision '", revision, "')");
  throw ValueError(cat("model '", model, "'", rev,
                       " not found (no network access: hub models must "
                       "already be in the Hugging Face cache); searched:",
                       where));
}

}  // namespace cvllm
