// The seed's chat example in C++: a system prompt, one exchange, and a follow-up question rendered
// with the model's own chat template (SmolLM2's here), then a custom template from examples/.
//
//   Python (vLLM):  outputs = llm.chat(conversation, sampling_params)
//
// Usage: example_chat [MODEL]   (default: the bundled SmolLM2-135M-Instruct)
#include <cvllm/cvllm.h>

#include <iostream>

int main(int argc, char** argv) {
  cvllm::LLM llm({.model = argc > 1 ? argv[1] : ""});
  cvllm::Conversation conversation = {
      {"system", "You are a helpful assistant"},
      {"user", "Hello"},
      {"assistant", "Hello! How can I assist you today?"},
      {"user", "Write an essay about the importance of higher education."},
  };
  auto outputs = llm.chat(conversation, {.temperature = 0.5, .max_tokens = 128});
  std::cout << "Prompt:\n" << *outputs[0].prompt << "\nGenerated text:\n" << outputs[0].outputs[0].text << "\n\n";

  // A model without a template, or another format: pass one explicitly (a file or the text).
  cvllm::ChatOptions options;
  options.chat_template = cvllm::load_chat_template(CVLLM_EXAMPLES_DIR "/template_chatml.jinja");
  auto custom = llm.chat({{"user", "What is the capital of France?"}}, {.temperature = 0.0, .max_tokens = 32}, options);
  std::cout << "With template_chatml.jinja: " << custom[0].outputs[0].text << "\n";
  return 0;
}
