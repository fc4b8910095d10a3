#include "engine/progress_bar.h"

#include <unistd.h>

#include <cstdio>
#include <string>

#include "util/system.h"

namespace cvllm {

ProgressBar::ProgressBar(int64_t total, bool enabled)
    : total_(total), enabled_(enabled && isatty(STDERR_FILENO)), start_(monotonic_seconds()) {
  if (enabled_) draw();
}

void ProgressBar::update(int64_t finished, int64_t input_tokens, int64_t output_tokens) {
  finished_ = finished;
  input_tokens_ = input_tokens;
  output_tokens_ = output_tokens;
  double now = monotonic_seconds();
  if (enabled_ && (now - last_draw_ > 0.1 || finished_ == total_)) draw();
}

void ProgressBar::draw() {
  last_draw_ = monotonic_seconds();
  double elapsed = last_draw_ - start_;
  int pct = total_ > 0 ? static_cast<int>(100 * finished_ / total_) : 100;
  constexpr int kWidth = 20;
  int filled = total_ > 0 ? static_cast<int>(kWidth * finished_ / total_) : kWidth;
  std::string bar;
  for (int i = 0; i < kWidth; ++i) bar += i < filled ? "\u2588" : " ";
  double rate = elapsed > 0 ? static_cast<double>(finished_) / elapsed : 0.0;
  double in_speed = elapsed > 0 ? static_cast<double>(input_tokens_) / elapsed : 0.0;
  double out_speed = elapsed > 0 ? static_cast<double>(output_tokens_) / elapsed : 0.0;
  std::fprintf(stderr,
               "\rProcessed prompts: %3d%%|%s| %lld/%lld [%02d:%02d, %.2fit/s, est. speed input: "
               "%.2f toks/s, output: %.2f toks/s]",
               pct, bar.c_str(), static_cast<long long>(finished_), static_cast<long long>(total_),
               static_cast<int>(elapsed) / 60, static_cast<int>(elapsed) % 60, rate, in_speed,
               out_speed);
  std::fflush(stderr);
}

void ProgressBar::close() {
  if (!enabled_) return;
  draw();
  std::fprintf(stderr, "\n");
  enabled_ = false;
}

}  // namespace cvllm
