// cvllm command line: `cvllm <subcommand> [flags]`. Each subcommand lives in its own file.
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "cli/commands.h"
#include "cvllm/errors.h"

namespace {

void print_usage() {
  std::fprintf(stderr,
               "usage: cvllm <command> [flags]\n\n"
               "commands:\n"
               "  generate   generate text offline (--prompt, --temperature, --max-tokens, ...)\n"
               "  tokenize   print the token ids of a text (--model, --text)\n"
               "  bench      benchmarks: `cvllm bench latency` (--input-len, --output-len, ...)\n\n"
               "--model defaults to the bundled SmolLM2-135M-Instruct (scripts/setup.sh fetches it).\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    print_usage();
    return argc < 2 ? 2 : 0;
  }
  std::string command = argv[1];
  try {
    if (command == "generate") return cvllm::cli::run_generate(argc, argv);
    if (command == "tokenize") return cvllm::cli::run_tokenize(argc, argv);
    if (command == "bench") return cvllm::cli::run_bench(argc, argv);
  } catch (const cvllm::ValueError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr, "error: unknown command '%s'\n\n", command.c_str());
  print_usage();
  return 2;
}
