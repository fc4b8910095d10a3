// The cvllm binary as a user runs it: generate (text and JSON), tokenize on a vocabulary-only
// GGUF, bench latency, and clear errors with the right exit code for bad input.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "loader/model_resolver.h"

namespace {

struct Result {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

Result run(const std::string& args) {
  std::string err_file = std::filesystem::temp_directory_path() / ("cvllm_e2e_" + std::to_string(::getpid()) + ".err");
  std::string cmd = std::string(CVLLM_BINARY_DIR) + "/cvllm " + args + " 2>" + err_file;
  Result r;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) r.out.append(buf.data(), n);
  int status = ::pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (FILE* f = std::fopen(err_file.c_str(), "r")) {
    while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) r.err.append(buf.data(), n);
    std::fclose(f);
  }
  std::filesystem::remove(err_file);
  return r;
}

std::string tiny() { return std::string(CVLLM_SOURCE_DIR) + "/tests/golden/data/tiny_llama_q8_0.gguf"; }
std::string testdata(const std::string& name) { return std::string(CVLLM_SOURCE_DIR) + "/../shared/testdata/" + name; }

TEST(Cli, GenerateJsonIsDeterministicWithGreedy) {
  std::string cmd = "generate --model " + tiny() + " --prompt 'the quick' --prompt 'brown fox' "
                    "--temperature 0 --max-tokens 5 --ignore-eos --output-json";
  Result a = run(cmd);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  nlohmann::json j = nlohmann::json::parse(a.out);
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0]["prompt"], "the quick");
  EXPECT_EQ(j[1]["prompt"], "brown fox");
  EXPECT_EQ(j[0]["outputs"][0]["token_ids"].size(), 5u);
  EXPECT_EQ(j[0]["outputs"][0]["finish_reason"], "length");
  EXPECT_EQ(run(cmd).out, a.out);
}

TEST(Cli, GenerateWithBeamSearchPrintsEveryBeam) {
  Result r = run("generate --model " + tiny() + " --prompt 'the quick' --beam-width 3 --max-tokens 4 "
                 "--ignore-eos --output-json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j[0]["outputs"].size(), 3u);
  EXPECT_EQ(j[0]["outputs"][2]["index"], 2);
  EXPECT_EQ(j[0]["outputs"][0]["token_ids"].size(), 4u);
  EXPECT_EQ(run("generate --model " + tiny() + " --prompt x --beam-width 0").exit_code, 2);
}

TEST(Cli, GenerateWithDefaultModelPrintsText) {
  if (!std::filesystem::exists(cvllm::default_model_path())) GTEST_SKIP() << "default model missing";
  Result r = run("generate --prompt 'The capital of France is' --temperature 0 --max-tokens 8");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Paris"), std::string::npos) << r.out;
}

TEST(Cli, TokenizeWorksOnVocabularyOnlyFiles) {
  Result r = run("tokenize --model " + testdata("tokenizer/ggml-vocab-gpt-2.gguf") + " --text 'Hello world'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "15496 995\n");  // GPT-2's ids for "Hello" and " world"
  Result stdin_run = run("tokenize --model " + testdata("tokenizer/ggml-vocab-gpt-2.gguf") +
                         " --add-special-tokens < /dev/null");
  EXPECT_EQ(stdin_run.exit_code, 0) << stdin_run.err;
  EXPECT_EQ(stdin_run.out, "\n");  // empty text: no ids (GPT-2 adds no BOS)
}

TEST(Cli, BenchLatencyPrintsJson) {
  Result r = run("bench latency --model " + tiny() + " --input-len 8 --output-len 4 --batch-size 2 --num-iters 1 --num-iters-warmup 0");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_GT(j["prompt_tokens_per_s"].get<double>(), 0.0);
  EXPECT_GT(j["decode_tokens_per_s"].get<double>(), 0.0);
  EXPECT_EQ(j["batch_size"], 2);

  // Beam search: width 3, 4 steps over an 8-token prompt. Forward passes see the prompt once and
  // then one token per live beam (8 + 3 * 3); re-submitting every beam would prefill
  // 8 + 3 * (9 + 10 + 11) tokens.
  Result beam = run("bench latency --model " + tiny() + " --use-beam-search --n 3 --input-len 8 "
                    "--output-len 4 --batch-size 2 --num-iters 1 --num-iters-warmup 0");
  ASSERT_EQ(beam.exit_code, 0) << beam.err;
  nlohmann::json b = nlohmann::json::parse(beam.out);
  EXPECT_EQ(b["beam_width"], 3);
  EXPECT_EQ(b["forward_tokens_per_prompt"], 17);
  EXPECT_EQ(b["reprefill_tokens_per_prompt"], 98);
  EXPECT_GT(b["peak_kv_cache_usage"].get<double>(), 0.0);
  EXPECT_GT(b["avg_latency_s"].get<double>(), 0.0);
}

std::string write_temp(const std::string& name, const std::string& text) {
  std::string path = std::filesystem::temp_directory_path() / name;
  FILE* f = std::fopen(path.c_str(), "wb");
  std::fputs(text.c_str(), f);
  std::fclose(f);
  return path;
}

TEST(Cli, RenderPrintsExactlyThePromptOnVocabularyOnlyFiles) {
  std::string messages = write_temp("cvllm_e2e_messages.json",
                                    R"([{"role": "system", "content": "sys"}, {"role": "user", "content": "Hi"}])");
  std::string chatml = std::string(CVLLM_SOURCE_DIR) + "/examples/template_chatml.jinja";
  Result r = run("render --model " + testdata("tokenizer/ggml-vocab-gpt-2.gguf") + " --messages " +
                 messages + " --chat-template " + chatml);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  Result no_prompt = run("render --model " + testdata("tokenizer/ggml-vocab-gpt-2.gguf") + " --messages " +
                         messages + " --chat-template " + chatml + " --add-generation-prompt false");
  EXPECT_EQ(no_prompt.out, "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
  Result ids = run("render --model " + tiny() + " --messages " + messages + " --chat-template " + chatml + " --token-ids");
  ASSERT_EQ(ids.exit_code, 0) << ids.err;
  EXPECT_EQ(ids.out.substr(0, 2), "1 ");  // <|im_start|> as the special token, no BOS added
  Result none = run("render --model " + tiny() + " --messages " + messages);
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_NE(none.err.find("chat template"), std::string::npos) << none.err;
  std::filesystem::remove(messages);
}

TEST(Cli, ChatOneShotAndInteractive) {
  std::string chatml = std::string(CVLLM_SOURCE_DIR) + "/examples/template_chatml.jinja";
  Result once = run("generate --model " + tiny() + " --chat --chat-template " + chatml +
                    " --prompt 'hello there' --temperature 0 --max-tokens 3 --ignore-eos --output-json");
  ASSERT_EQ(once.exit_code, 0) << once.err;
  nlohmann::json j = nlohmann::json::parse(once.out);
  EXPECT_EQ(j[0]["prompt"], "<|im_start|>user\nhello there<|im_end|>\n<|im_start|>assistant\n");
  std::string input = write_temp("cvllm_e2e_chat_input.txt", "first question\n/reset\nsecond\n/exit\nnever read\n");
  Result chat = run("chat --model " + tiny() + " --chat-template " + chatml + " --max-tokens 4 --temperature 0 < " + input);
  ASSERT_EQ(chat.exit_code, 0) << chat.err;
  EXPECT_NE(chat.out.find("(conversation cleared)"), std::string::npos) << chat.out;
  EXPECT_EQ(std::count(chat.out.begin(), chat.out.end(), '>'), 4) << chat.out;  // 3 turns + the exit prompt
  std::filesystem::remove(input);
}

TEST(Cli, HelpListsEachCommandsFlags) {
  Result serve = run("serve --help");
  EXPECT_EQ(serve.exit_code, 0) << serve.err;
  EXPECT_NE(serve.out.find("usage: cvllm serve [flags]"), std::string::npos) << serve.out;
  EXPECT_NE(serve.out.find("--port VALUE"), std::string::npos) << serve.out;
  EXPECT_NE(serve.out.find("--[no-]enable-prefix-caching"), std::string::npos) << serve.out;

  Result bench = run("bench latency -h");
  EXPECT_EQ(bench.exit_code, 0) << bench.err;
  EXPECT_NE(bench.out.find("usage: cvllm bench latency [flags]"), std::string::npos) << bench.out;
  EXPECT_NE(bench.out.find("--input-len VALUE"), std::string::npos) << bench.out;
}

TEST(Cli, BadInputGivesClearErrorsAndExitCodes) {
  Result unknown_flag = run("generate --model " + tiny() + " --temprature 0");
  EXPECT_EQ(unknown_flag.exit_code, 2);
  EXPECT_NE(unknown_flag.err.find("unknown flag --temprature"), std::string::npos) << unknown_flag.err;

  Result bad_value = run("generate --model " + tiny() + " --top-p 1.5 --prompt x");
  EXPECT_EQ(bad_value.exit_code, 2);
  EXPECT_NE(bad_value.err.find("top_p must be in (0, 1]"), std::string::npos) << bad_value.err;

  Result not_number = run("generate --model " + tiny() + " --max-tokens ten --prompt x");
  EXPECT_EQ(not_number.exit_code, 2);
  EXPECT_NE(not_number.err.find("--max-tokens expects an integer"), std::string::npos) << not_number.err;

  Result missing = run("generate --model /nonexistent/model.gguf --prompt x");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("/nonexistent/model.gguf"), std::string::npos) << missing.err;

  std::string corrupt = std::filesystem::temp_directory_path() / "cvllm_corrupt.gguf";
  { FILE* f = std::fopen(corrupt.c_str(), "wb"); std::fputs("GGUF\x03garbage", f); std::fclose(f); }
  Result bad_file = run("generate --model " + corrupt + " --prompt x");
  EXPECT_EQ(bad_file.exit_code, 1);
  EXPECT_NE(bad_file.err.find(corrupt), std::string::npos) << bad_file.err;
  std::filesystem::remove(corrupt);

  Result vocab_only = run("generate --model " + testdata("tokenizer/ggml-vocab-gpt-2.gguf") + " --prompt x");
  EXPECT_NE(vocab_only.exit_code, 0);
  EXPECT_NE(vocab_only.err.find("error:"), std::string::npos) << vocab_only.err;

  Result no_command = run("frobnicate");
  EXPECT_EQ(no_command.exit_code, 2);
  EXPECT_NE(no_command.err.find("unknown command"), std::string::npos);
}

}  // namespace
