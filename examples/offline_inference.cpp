// The seed's first example in C++: generate continuations of a few prompts.
//
//   Python (vLLM):  llm = LLM(model="facebook/opt-125m")
//                   outputs = llm.generate(prompts, SamplingParams(temperature=0.8, top_p=0.95))
//
// Usage: example_offline_inference [MODEL]   (default: the bundled SmolLM2-135M-Instruct)
#include <cvllm/cvllm.h>

#include <iostream>

int main(int argc, char** argv) {
  std::vector<std::string> prompts = {
      "Hello, my name is",
      "The president of the United States is",
      "The capital of France is",
      "The future of AI is",
  };
  cvllm::LLM llm({.model = argc > 1 ? argv[1] : ""});
  auto outputs = llm.generate(prompts, {.temperature = 0.8, .top_p = 0.95});
  for (const auto& output : outputs) {
    std::cout << "Prompt: " << *output.prompt << "\nGenerated text: " << output.outputs[0].text
              << "\n\n";
  }
  // Greedy: temperature 0.
  auto greedy = llm.generate("Hello, my name is", {.temperature = 0.0, .max_tokens = 16});
  std::cout << "Greedy: " << greedy[0].outputs[0].text << "\n";
  return 0;
}
