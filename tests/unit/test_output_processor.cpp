// The output processor with synthetic engine outputs over a byte-level vocabulary (the tiny test
// model's: byte b is token 3 + b), so text can be fed one byte per token: stop strings found
// across token boundaries and inside multi-byte characters, streaming hold-back, stop tokens kept
// out of the text, DELTA vs CUMULATIVE, n > 1 fan-in, abort.
#include <gtest/gtest.h>

#include "engine/output_processor.h"
#include "loader/gguf.h"
#include "tokenizer/tokenizer.h"
#include "util/utf8.h"

namespace cvllm {
namespace {

class OutputProcessorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    file_ = GgufFile::open(std::string(CVLLM_SOURCE_DIR) + "/tests/golden/data/tiny_llama_q8_0.gguf");
    tokenizer_ = Tokenizer::from_gguf(*file_).release();
  }
  static std::vector<int32_t> bytes_of(const std::string& text) {
    std::vector<int32_t> ids;
    for (unsigned char c : text) ids.push_back(3 + c);
    return ids;
  }
  // Feeds `ids` one token per step; returns the outputs seen and which child ids were aborted.
  std::vector<RequestOutput> feed(OutputProcessor& op, const std::string& id,
                                  const std::vector<int32_t>& ids, std::vector<std::string>* aborted = nullptr,
                                  std::optional<RequestStatus> final_status = std::nullopt,
                                  std::optional<int32_t> stop_token = std::nullopt) {
    std::vector<RequestOutput> outs;
    for (size_t i = 0; i < ids.size(); ++i) {
      EngineCoreOutput o;
      o.request_id = id;
      o.new_token_ids = {ids[i]};
      if (i + 1 == ids.size() && final_status) {
        o.finished = true;
        o.status = *final_status;
        o.stop_token = stop_token;
      }
      OutputProcessor::Result r = op.process_outputs({o});
      for (auto& out : r.request_outputs) outs.push_back(out);
      if (aborted) aborted->insert(aborted->end(), r.reqs_to_abort.begin(), r.reqs_to_abort.end());
      if (!r.reqs_to_abort.empty()) break;
    }
    return outs;
  }
  static std::shared_ptr<GgufFile> file_;
  static Tokenizer* tokenizer_;
};

std::shared_ptr<GgufFile> OutputProcessorTest::file_;
Tokenizer* OutputProcessorTest::tokenizer_ = nullptr;

TEST_F(OutputProcessorTest, StopStringAcrossTokensTruncatesAndAborts) {
  OutputProcessor op(tokenizer_);
  auto p = std::make_shared<SamplingParams>();
  p->stop = {"lo w"};
  p->output_kind = RequestOutputKind::kFinalOnly;
  op.add_request("a", "prompt", {3, 4}, p, {"a"});
  std::vector<std::string> aborted;
  std::vector<RequestOutput> outs = feed(op, "a", bytes_of("hello world"), &aborted);
  ASSERT_EQ(outs.size(), 1u);
  EXPECT_EQ(outs[0].outputs[0].text, "hel");
  EXPECT_EQ(outs[0].outputs[0].finish_reason, "stop");
  EXPECT_EQ(std::get<std::string>(outs[0].outputs[0].stop_reason), "lo w");
  EXPECT_EQ(outs[0].outputs[0].token_ids.size(), 7u);  // "hello w": token ids are not truncated
  EXPECT_EQ(aborted, std::vector<std::string>{"a"});
  EXPECT_FALSE(op.has_unfinished_requests());
}

TEST_F(OutputProcessorTest, IncludeStopStringKeepsIt) {
  OutputProcessor op(tokenizer_);
  auto p = std::make_shared<SamplingParams>();
  p->stop = {"wor", "o"};  // the first stop string in the list that matches wins, as in vLLM
  p->include_stop_str_in_output = true;
  p->output_kind = RequestOutputKind::kFinalOnly;
  op.add_request("a", std::nullopt, {3}, p, {"a"});
  std::vector<RequestOutput> outs = feed(op, "a", bytes_of("hello world"));
  ASSERT_EQ(outs.size(), 1u);
  EXPECT_EQ(outs[0].outputs[0].text, "hello");
  EXPECT_EQ(std::get<std::string>(outs[0].outputs[0].stop_reason), "o");
}

TEST_F(OutputProcessorTest, MultiByteCharactersNeverSplitAndStopInsideThem) {
  OutputProcessor op(tokenizer_);
  auto p = std::make_shared<SamplingParams>();
  p->stop = {"ö"};
  p->output_kind = RequestOutputKind::kDelta;
  op.add_request("a", std::nullopt, {3}, p, {"a"});
  std::string streamed;
  for (const RequestOutput& o : feed(op, "a", bytes_of("h\xC3\xA9llo w\xC3\xB6rld"))) {
    const std::string& piece = o.outputs[0].text;
    // Every delta is whole UTF-8 characters.
    EXPECT_EQ(utf8::incomplete_suffix_length(piece), 0u) << piece;
    streamed += piece;
  }
  EXPECT_EQ(streamed, "h\xC3\xA9llo w");
}

TEST_F(OutputProcessorTest, StreamingHoldsBackPossibleStopPrefix) {
  OutputProcessor op(tokenizer_);
  auto p = std::make_shared<SamplingParams>();
  p->stop = {"STOP"};
  p->output_kind = RequestOutputKind::kCumulative;
  op.add_request("a", std::nullopt, {3}, p, {"a"});
  std::vector<RequestOutput> outs = feed(op, "a", bytes_of("abcdefSTOPxyz"));
  ASSERT_FALSE(outs.empty());
  // Up to 3 characters ("STO" could be the start of "STOP") are held back while streaming; the
  // stop string itself never appears.
  for (const RequestOutput& o : outs) {
    EXPECT_EQ(o.outputs[0].text.find("S"), std::string::npos) << o.outputs[0].text;
  }
  EXPECT_EQ(outs[2].outputs[0].text, "");    // "abc": all could precede a stop string
  EXPECT_EQ(outs[3].outputs[0].text, "a");  // "abcd"
  EXPECT_EQ(outs.back().outputs[0].text, "abcdef");
  EXPECT_TRUE(outs.back().finished);
}

TEST_F(OutputProcessorTest, StopTokenTextExcludedUnlessAsked) {
  for (bool include : {false, true}) {
    OutputProcessor op(tokenizer_);
    auto p = std::make_shared<SamplingParams>();
    p->output_kind = RequestOutputKind::kFinalOnly;
    p->include_stop_str_in_output = include;
    op.add_request("a", std::nullopt, {3}, p, {"a"});
    std::vector<int32_t> ids = bytes_of("ab!");
    std::vector<RequestOutput> outs =
        feed(op, "a", ids, nullptr, RequestStatus::kFinishedStopped, ids.back());
    ASSERT_EQ(outs.size(), 1u);
    EXPECT_EQ(outs[0].outputs[0].text, include ? "ab!" : "ab");
    EXPECT_EQ(std::get<int32_t>(outs[0].outputs[0].stop_reason), ids.back());
    EXPECT_EQ(outs[0].outputs[0].token_ids, ids);
  }
}

TEST_F(OutputProcessorTest, LengthFinishKeepsAllText) {
  OutputProcessor op(tokenizer_);
  auto p = std::make_shared<SamplingParams>();
  p->output_kind = RequestOutputKind::kFinalOnly;
  op.add_request("a", std::nullopt, {3}, p, {"a"});
  std::vector<RequestOutput> outs = feed(op, "a", bytes_of("xyz"), nullptr, RequestStatus::kFinishedLengthCapped);
  ASSERT_EQ(outs.size(), 1u);
  EXPECT_EQ(outs[0].outputs[0].text, "xyz");
  EXPECT_EQ(outs[0].outputs[0].finish_reason, "length");
  EXPECT_TRUE(std::holds_alternative<std::monostate>(outs[0].outputs[0].stop_reason));
}

TEST_F(OutputProcessorTest, ChildrenFanInAndFinalOutputWaitsForAll) {
  OutputProcessor op(tokenizer_);
  auto p = std::make_shared<SamplingParams>();
  p->n = 2;
  p->output_kind = RequestOutputKind::kFinalOnly;
  op.add_request("r", std::nullopt, {3}, p, {"0_r", "1_r"});
  EXPECT_TRUE(feed(op, "0_r", bytes_of("ab"), nullptr, RequestStatus::kFinishedLengthCapped).empty());
  std::vector<RequestOutput> outs = feed(op, "1_r", bytes_of("cd"), nullptr, RequestStatus::kFinishedLengthCapped);
  ASSERT_EQ(outs.size(), 1u);
  ASSERT_EQ(outs[0].outputs.size(), 2u);
  EXPECT_EQ(outs[0].outputs[0].text, "ab");
  EXPECT_EQ(outs[0].outputs[1].text, "cd");
  EXPECT_EQ(outs[0].outputs[1].index, 1);
  EXPECT_EQ(outs[0].request_id, "r");
}

TEST_F(OutputProcessorTest, AbortReportsWhatWasGenerated) {
  OutputProcessor op(tokenizer_);
  auto p = std::make_shared<SamplingParams>();
  p->output_kind = RequestOutputKind::kFinalOnly;
  op.add_request("a", std::nullopt, {3}, p, {"a"});
  feed(op, "a", bytes_of("par"));
  EXPECT_EQ(op.unfinished_children("a"), std::vector<std::string>{"a"});
  std::vector<RequestOutput> outs = op.abort_requests({"a"});
  ASSERT_EQ(outs.size(), 1u);
  EXPECT_EQ(outs[0].outputs[0].finish_reason, "abort");
  EXPECT_EQ(outs[0].outputs[0].text, "par");
  EXPECT_TRUE(outs[0].finished);
  EXPECT_FALSE(op.has_unfinished_requests());
}

}  // namespace
}  // namespace cvllm
