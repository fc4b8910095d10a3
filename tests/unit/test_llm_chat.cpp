// LLM.chat on the tiny model with an explicit template: the prompt is the rendered template,
// tokenized without adding special tokens again; vLLM's errors for a missing template and for
// add_generation_prompt with continue_final_message; several conversations at once.
#include <gtest/gtest.h>

#include "chat/chat_template.h"
#include "cvllm/cvllm.h"
#include "tokenizer/tokenizer.h"
#include "unit/tiny_model.h"

namespace cvllm {
namespace {

using testing::tiny_args;

std::string chatml() { return load_chat_template(std::string(CVLLM_SOURCE_DIR) + "/examples/template_chatml.jinja"); }

SamplingParams greedy(int n) {
  SamplingParams p;
  p.temperature = 0.0;
  p.max_tokens = n;
  p.ignore_eos = true;
  return p;
}

TEST(LLMChat, RendersTheTemplateAndTokenizesWithoutSpecialTokens) {
  LLM llm(tiny_args());
  ChatOptions options;
  options.chat_template = chatml();
  Conversation conversation = {{"system", "be brief"}, {"user", "the quick brown fox"}};
  RequestOutput out = llm.chat(conversation, greedy(4), options, false)[0];
  const std::string expected = "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nthe quick brown fox<|im_end|>\n<|im_start|>assistant\n";
  EXPECT_EQ(out.prompt, expected);
  EXPECT_EQ(out.prompt_token_ids, llm.get_tokenizer().encode(expected, /*add_special_tokens=*/false));
  EXPECT_EQ(out.prompt_token_ids.front(), 1);  // <|im_start|> parsed as the special token
  EXPECT_EQ(out.outputs[0].token_ids.size(), 4u);
  // The same as generating from the rendered token ids.
  EXPECT_EQ(llm.generate(out.prompt_token_ids, greedy(4), false)[0].outputs[0].token_ids, out.outputs[0].token_ids);
}

TEST(LLMChat, ContinueFinalMessageAndBatches) {
  LLM llm(tiny_args());
  ChatOptions options;
  options.chat_template = chatml();
  options.add_generation_prompt = false;
  options.continue_final_message = true;
  RequestOutput out = llm.chat({{"user", "hi"}, {"assistant", "the answer is"}}, greedy(2), options, false)[0];
  EXPECT_EQ(out.prompt, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nthe answer is");
  options.add_generation_prompt = true;
  EXPECT_THROW(llm.chat({{"user", "hi"}}, greedy(2), options, false), ValueError);

  ChatOptions plain;
  plain.chat_template = chatml();
  std::vector<Conversation> many = {{{"user", "one"}}, {{"user", "two"}}, {{"user", "three"}}};
  std::vector<RequestOutput> outs = llm.chat(many, greedy(3), plain, false);
  ASSERT_EQ(outs.size(), 3u);
  EXPECT_NE(outs[2].prompt->find("three"), std::string::npos);
}

TEST(LLMChat, ModelWithoutTemplateIsVllmsError) {
  LLM llm(tiny_args());  // the tiny GGUF carries no chat template
  try {
    llm.chat({{"user", "hi"}}, greedy(1));
    ADD_FAILURE() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("default chat template is no longer allowed"), std::string::npos);
  }
  EXPECT_THROW(load_chat_template("no/such/template.jinja"), ValueError);
  ChatOptions bad_tools;
  bad_tools.chat_template = chatml();
  bad_tools.tools_json = "[not json";
  EXPECT_THROW(llm.chat({{"user", "hi"}}, greedy(1), bad_tools), ValueError);
}

TEST(LLMChat, OpenAiShapedJsonMessages) {
  LLM llm(tiny_args());
  ChatOptions options;
  options.chat_template = chatml();
  std::string messages = R"([{"role": "user", "content": [{"type": "text", "text": "part one"}, {"type": "text", "text": "part two"}]}])";
  RequestOutput out = llm.chat_json(messages, greedy(1), options, false)[0];
  EXPECT_NE(out.prompt->find("part one\npart two"), std::string::npos) << *out.prompt;
  EXPECT_THROW(llm.chat_json("{\"role\": \"user\"}", greedy(1), options, false), ValueError);
}

}  // namespace
}  // namespace cvllm
