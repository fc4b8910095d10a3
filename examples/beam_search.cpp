// The seed's beam-search example in C++:
//
//   Python (vLLM):  outputs = llm.generate("Hello, my name is",
//                                          BeamSearchParams(beam_width=5, max_tokens=50))
//
// Usage: example_beam_search [MODEL]   (default: the bundled SmolLM2-135M-Instruct)
#include <cvllm/cvllm.h>

#include <iostream>

int main(int argc, char** argv) {
  cvllm::LLM llm({.model = argc > 1 ? argv[1] : ""});
  auto outputs = llm.generate("Hello, my name is", cvllm::BeamSearchParams(5, 50));
  for (const auto& beam : outputs[0].outputs) {
    std::cout << "beam " << beam.index << " (cumulative logprob " << *beam.cumulative_logprob
              << "): " << beam.text << "\n";
  }
  // vLLM's LLM.beam_search returns prompt + generated tokens and the full text.
  auto searched = llm.beam_search({"The capital of France is"}, cvllm::BeamSearchParams(3, 16));
  std::cout << "best: " << searched[0].sequences[0].text << "\n";
  return 0;
}
