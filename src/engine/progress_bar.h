// A tqdm-style progress line for LLM.generate on a terminal:
// "Processed prompts: 100%|██████████| 8/8 [00:01<00:00, 5.2it/s, est. speed input: 310.4 toks/s,
//  output: 85.1 toks/s]"
#pragma once

#include <cstdint>

namespace cvllm {

class ProgressBar {
 public:
  ProgressBar(int64_t total, bool enabled);
  void update(int64_t finished, int64_t input_tokens, int64_t output_tokens);
  void close();

 private:
  int64_t total_;
  bool enabled_;
  double start_;
  double last_draw_ = 0.0;
  int64_t finished_ = 0, input_tokens_ = 0, output_tokens_ = 0;
  void draw();
};

}  // namespace cvllm
