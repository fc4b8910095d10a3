// Model resolution: paths, the cvllm cache folder, and hub ids through a fake Hugging Face cache
// laid out as huggingface_hub does (models--org--name/{refs/main, snapshots/<commit>/}), with
// revisions, the cache environment variables, and the "searched" list in the error.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "loader/model_resolver.h"
#include "util/error.h"

namespace cvllm {
namespace {

namespace fs = std::filesystem;

// Sets an environment variable for the scope of a test and restores it afterwards.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::optional<std::string>& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      setenv(name, value->c_str(), 1);
    } else {
      unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

class ModelResolver : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("cvllm_resolver_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  // <hub>/models--org--name with snapshots `commits` and refs `ref -> commit`.
  fs::path make_repo(const fs::path& hub, const std::string& id,
                     const std::vector<std::string>& commits,
                     const std::vector<std::pair<std::string, std::string>>& refs) {
    std::string folder = "models--" + id;
    folder.replace(folder.find('/'), 1, "--");
    fs::path repo = hub / folder;
    for (const std::string& c : commits) {
      fs::create_directories(repo / "snapshots" / c);
      std::ofstream(repo / "snapshots" / c / "config.json") << "{}";
    }
    fs::create_directories(repo / "refs");
    for (const auto& [ref, commit] : refs) std::ofstream(repo / "refs" / ref) << commit << "\n";
    return repo;
  }

  std::string error_of(const std::string& model, const std::string& revision = "") {
    try {
      resolve_model(model, revision);
    } catch (const ValueError& e) {
      return e.what();
    }
    ADD_FAILURE() << "expected an error for " << model;
    return "";
  }

  fs::path root_;
};

TEST_F(ModelResolver, PathsResolveToTheirFormat) {
  fs::path gguf = root_ / "m.gguf";
  std::ofstream(gguf) << "GGUF";
  fs::path dir = root_ / "checkpoint";
  fs::create_directories(dir);
  EXPECT_EQ(resolve_model(gguf.string()).format, ModelFormat::kGguf);
  ResolvedModel d = resolve_model(dir.string());
  EXPECT_EQ(d.format, ModelFormat::kHuggingFaceDir);
  EXPECT_EQ(d.path, dir.string());
}

TEST_F(ModelResolver, BareFileNameFromTheCvllmCache) {
  ScopedEnv cache("CVLLM_CACHE_DIR", root_.string());
  std::ofstream(root_ / "x.gguf") << "GGUF";
  EXPECT_EQ(resolve_model("x.gguf").path, (root_ / "x.gguf").string());
}

TEST_F(ModelResolver, HubIdUsesRefsMain) {
  ScopedEnv hub("HF_HUB_CACHE", (root_ / "hub").string());
  fs::path repo = make_repo(root_ / "hub", "org/model", {"aaa111", "bbb222"},
                            {{"main", "bbb222"}, {"v1", "aaa111"}});
  ResolvedModel r = resolve_model("org/model");
  EXPECT_EQ(r.format, ModelFormat::kHuggingFaceDir);
  EXPECT_EQ(r.path, (repo / "snapshots" / "bbb222").string());
  // A tag through refs/, a commit hash directly.
  EXPECT_EQ(resolve_model("org/model", "v1").path, (repo / "snapshots" / "aaa111").string());
  EXPECT_EQ(resolve_model("org/model", "aaa111").path, (repo / "snapshots" / "aaa111").string());
}

TEST_F(ModelResolver, OnlySnapshotWithoutRefs) {
  ScopedEnv hub("HF_HUB_CACHE", (root_ / "hub").string());
  fs::path repo = make_repo(root_ / "hub", "org/solo", {"ccc333"}, {});
  EXPECT_EQ(resolve_model("org/solo").path, (repo / "snapshots" / "ccc333").string());
  // Two snapshots and no refs/main: ambiguous, so not found.
  make_repo(root_ / "hub", "org/two", {"d1", "d2"}, {});
  EXPECT_NE(error_of("org/two").find("refs/main"), std::string::npos);
}

TEST_F(ModelResolver, CacheLocationFromEnvironment) {
  ScopedEnv hub_cache("HF_HUB_CACHE", std::nullopt);
  {
    ScopedEnv home("HF_HOME", (root_ / "hfhome").string());
    EXPECT_EQ(hf_hub_cache_dir(), (root_ / "hfhome" / "hub").string());
    fs::path repo = make_repo(root_ / "hfhome" / "hub", "a/b", {"c0"}, {{"main", "c0"}});
    EXPECT_EQ(resolve_model("a/b").path, (repo / "snapshots" / "c0").string());
  }
  {
    ScopedEnv home("HF_HOME", std::nullopt);
    ScopedEnv xdg("XDG_CACHE_HOME", (root_ / "xdg").string());
    EXPECT_EQ(hf_hub_cache_dir(), (root_ / "xdg" / "huggingface" / "hub").string());
  }
  {
    ScopedEnv home("HF_HOME", std::nullopt);
    ScopedEnv xdg("XDG_CACHE_HOME", std::nullopt);
    ScopedEnv user_home("HOME", (root_ / "user").string());
    EXPECT_EQ(hf_hub_cache_dir(), (root_ / "user" / ".cache" / "huggingface" / "hub").string());
  }
  ScopedEnv hub("HF_HUB_CACHE", (root_ / "explicit").string());
  EXPECT_EQ(hf_hub_cache_dir(), (root_ / "explicit").string());
}

TEST_F(ModelResolver, NotFoundListsEverySearchedPlace) {
  ScopedEnv hub("HF_HUB_CACHE", (root_ / "hub").string());
  ScopedEnv cache("CVLLM_CACHE_DIR", (root_ / "cvllm").string());
  make_repo(root_ / "hub", "org/model", {"aaa111"}, {{"main", "aaa111"}});
  std::string msg = error_of("org/model", "v2");
  EXPECT_NE(msg.find("model 'org/model' (revision 'v2') not found"), std::string::npos) << msg;
  fs::path repo = root_ / "hub" / "models--org--model";
  EXPECT_NE(msg.find("\n  org/model"), std::string::npos) << msg;  // as a path
  EXPECT_NE(msg.find((repo / "refs" / "v2").string()), std::string::npos) << msg;
  EXPECT_NE(msg.find((repo / "snapshots" / "v2").string()), std::string::npos) << msg;

  msg = error_of("nobody/nothing");
  EXPECT_NE(msg.find((root_ / "hub" / "models--nobody--nothing" / "refs" / "main").string()),
            std::string::npos)
      << msg;

  msg = error_of("weights.gguf");
  EXPECT_NE(msg.find((root_ / "cvllm" / "weights.gguf").string()), std::string::npos) << msg;
}

TEST_F(ModelResolver, HubIdsCannotEscapeTheCache) {
  ScopedEnv hub("HF_HUB_CACHE", (root_ / "hub").string());
  // A ref naming a path outside snapshots/ is ignored.
  make_repo(root_ / "hub", "org/evil", {"good"}, {{"main", "../../.."}});
  std::string msg = error_of("org/evil", "main");
  EXPECT_NE(msg.find("not found"), std::string::npos);
  // Not hub ids: no cache lookup at all.
  for (const char* id : {"../x/y", "a/b/c", "/abs", "org/../x"}) {
    std::string m = error_of(id);
    EXPECT_EQ(m.find("models--"), std::string::npos) << id << ": " << m;
  }
}

}  // namespace
}  // namespace cvllm
