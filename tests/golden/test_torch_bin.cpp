// PyTorch pytorch_model.bin checkpoints and GPT-2-style slow tokenizer files against transformers
// (scripts/gen_torch_bin_fixtures.py): tests/golden/data/torch_bin/opt_f32/ (one
// torch.save(state_dict()) file, tied lm_head sharing the embedding's storage, vocab.json +
// merges.txt with OPT's tokenizer_config) and opt_f16_sharded/ (three shards + index).
//   - open_hf_weights picks the torch checkpoint; the model's logits and a greedy continuation
//     (argmax fed back, full forward each step) match transformers;
//   - the tokenizer built from vocab.json + merges.txt gives transformers' GPT2Tokenizer ids over
//     the hard-string corpus (with and without special tokens) and its decoded texts, for OPT's
//     files (BOS "</s>" added), for GPT-2-style files with added_tokens_decoder entries, and for
//     openai-community/gpt2's bare tokenizer_config.json (GPT2Tokenizer's default special tokens).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "golden_util.h"
#include "golden/tokenizer_fixture.h"
#include "loader/hf_files.h"
#include "loader/torch_checkpoint.h"
#include "models/model_config.h"
#include "tokenizer/detokenizer.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace cvllm {
namespace {

using nlohmann::json;
using testing_fixture::decode_mismatches;
using testing_fixture::encode_mismatches;
using testing::closeness;
using testing::golden_path;
using testing::load_json;
using testing::to_floats;

// As test_model_hf.cpp: both sides in float32 from the same weights; ~1e-5 apart measured.
constexpr double kLogitAtol = 1e-4, kLogitRtol = 1e-4;
constexpr double kLogprobAtol = 2e-4;

class TorchBinModel : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = golden_path("torch_bin/" + GetParam());
    fixture_ = load_json(golden_path("torch_bin/" + GetParam() + ".json"));
    config_ = model_config_from_hf(dir_);
    weights_ = open_hf_weights(dir_, hf_weight_name_map(config_.architecture));
    model_ = create_model(config_, *weights_, backend_, CheckpointFormat::kHuggingFace);
  }
  std::vector<float> forward(const std::vector<int32_t>& ids) {
    return testing::forward_one_prompt(*model_, backend_, config_, ids, 4);
  }

  std::string dir_;
  json fixture_;
  ModelConfig config_;
  std::unique_ptr<WeightSource> weights_;
  cpu::CpuBackend backend_{2, cpu::MatmulPath::kReference};
  std::unique_ptr<CausalLM> model_;
};

TEST_P(TorchBinModel, LoadsTheTorchCheckpoint) {
  auto* torch = dynamic_cast<TorchWeightSource*>(weights_.get());
  ASSERT_NE(torch, nullptr) << "a directory with only pytorch_model.bin loads through torch";
  const bool sharded = GetParam().find("sharded") != std::string::npos;
  EXPECT_EQ(torch->checkpoint().files().size(), sharded ? 3u : 1u);
  EXPECT_TRUE(
      torch->path().ends_with(sharded ? "pytorch_model.bin.index.json" : "pytorch_model.bin"));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/model.safetensors"));
}

TEST_P(TorchBinModel, LogitsMatchTransformers) {
  const int64_t vocab = config_.vocab_size;
  for (const auto& prompt : fixture_["prompts"]) {
    std::vector<int32_t> ids = prompt["token_ids"].get<std::vector<int32_t>>();
    SCOPED_TRACE("prompt of " + std::to_string(ids.size()) + " tokens");
    std::vector<float> logits = forward(ids);
    ASSERT_EQ(logits.size(), ids.size() * vocab);
    std::vector<float> last(logits.end() - vocab, logits.end());
    std::vector<float> expected = to_floats(prompt["last_logits"]);
    size_t at = 0;
    EXPECT_LE(closeness(last, expected, kLogitAtol, kLogitRtol, &at), 1.0)
        << "logit " << at << ": ours " << last[at] << ", transformers " << expected[at];
    for (size_t p = 0; p < ids.size(); ++p) {
      std::vector<float> lp = testing::log_softmax_row(logits.data() + p * vocab, vocab);
      for (const auto& entry : prompt["top5"][p]) {
        EXPECT_NEAR(lp[entry[0].get<int32_t>()], entry[1].get<double>(), kLogprobAtol)
            << "position " << p;
      }
    }
  }
}

TEST_P(TorchBinModel, GreedyMatchesTransformers) {
  const int64_t vocab = config_.vocab_size;
  for (const auto& prompt : fixture_["prompts"]) {
    std::vector<int32_t> seq = prompt["token_ids"].get<std::vector<int32_t>>();
    std::vector<int32_t> greedy;
    for (int s = 0; s < fixture_["num_new_tokens"].get<int>(); ++s) {
      std::vector<float> logits = forward(seq);
      auto last = logits.end() - vocab;
      int32_t next = static_cast<int32_t>(std::max_element(last, logits.end()) - last);
      greedy.push_back(next);
      seq.push_back(next);
    }
    EXPECT_EQ(greedy, prompt["greedy_token_ids"].get<std::vector<int32_t>>());
  }
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, TorchBinModel,
                         ::testing::Values("opt_f32", "opt_f16_sharded"),
                         [](const auto& info) { return info.param; });

// As transformers: safetensors win when a directory has both; none at all is an Error naming the
// four file names.
TEST(TorchBinOpt, SafetensorsArePreferredOverPytorchModelBin) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("cvllm_torch_bin_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto same = [](const std::string& n) { return std::optional<std::string>(n); };
  try {
    open_hf_weights(dir.string(), same);
    ADD_FAILURE() << "an empty directory has no weights";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("pytorch_model.bin.index.json"), std::string::npos);
  }
  fs::copy_file(golden_path("torch_bin/opt_f32/pytorch_model.bin"), dir / "pytorch_model.bin");
  EXPECT_NE(dynamic_cast<TorchWeightSource*>(open_hf_weights(dir.string(), same).get()), nullptr);
  fs::copy_file(golden_path("hf/opt_f32/model.safetensors"), dir / "model.safetensors");
  EXPECT_NE(dynamic_cast<HfWeightSource*>(open_hf_weights(dir.string(), same).get()), nullptr);
  fs::remove_all(dir);
}

// The OPT directory's own tokenizer encodes the fixture's prompts as transformers does, and the
// text prompt's greedy continuation decodes to transformers' text.
TEST(TorchBinOpt, TextPromptThroughSlowTokenizer) {
  const std::string dir = golden_path("torch_bin/opt_f32");
  json fixture = load_json(golden_path("torch_bin/opt_f32.json"));
  ASSERT_TRUE(has_hf_tokenizer_files(dir));
  ASSERT_FALSE(std::filesystem::exists(dir + "/tokenizer.json"));
  std::unique_ptr<Tokenizer> tok = load_hf_tokenizer(dir);
  for (const auto& e : fixture["tokenizer"]["encodings"]) {
    EXPECT_EQ(tok->encode(e["text"].get<std::string>(), true),
              e["token_ids"].get<std::vector<int32_t>>())
        << e["text"];
  }
  const json& tp = fixture["text_prompt"];
  EXPECT_EQ(tok->decode(tp["greedy_token_ids"].get<std::vector<int32_t>>(), true),
            tp["greedy_text"].get<std::string>());
}

class SlowTokenizerGolden : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    cases_ = load_json(golden_path("torch_bin/" + GetParam() + "_cases.json"));
    tokenizer_ = load_hf_tokenizer(golden_path("torch_bin/" + GetParam()));
  }
  json cases_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_P(SlowTokenizerGolden, SpecialTokensMatchTransformers) {
  EXPECT_EQ(tokenizer_->vocab_size(), cases_["vocab_size"].get<int>());
  auto id_or_none = [](const json& j) {
    return j.is_null() ? std::nullopt : std::optional<int32_t>(j.get<int32_t>());
  };
  EXPECT_EQ(tokenizer_->bos_token_id(), id_or_none(cases_["bos_token_id"]));
  EXPECT_EQ(tokenizer_->eos_token_id(), id_or_none(cases_["eos_token_id"]));
}

TEST_P(SlowTokenizerGolden, EncodeMatchesTransformers) {
  EXPECT_EQ(encode_mismatches(*tokenizer_, cases_), 0);
  EXPECT_GT(cases_["encode"].size(), 100u);
}

// Decoding at once and streaming one id at a time both give transformers' text.
TEST_P(SlowTokenizerGolden, DecodeMatchesTransformers) {
  EXPECT_EQ(decode_mismatches(*tokenizer_, cases_, /*incremental=*/false), 0);
  EXPECT_EQ(decode_mismatches(*tokenizer_, cases_, /*incremental=*/true), 0);
  EXPECT_GT(cases_["decode"].size(), 50u);
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, SlowTokenizerGolden,
                         ::testing::Values("opt_f32", "gpt2_tokenizer", "gpt2_plain_tokenizer"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace cvllm
