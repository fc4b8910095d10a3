// cvllm command line: `cvllm <subcommand> [flags]`. Each subcommand lives in its own file.
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "cli/commands.h"
#include "cli/flags.h"
#include "cvllm/errors.h"

namespace {

void print_usage() {
  std::fprintf(stderr,
               "usage: cvllm <command> [flags]\n\n"
               "commands:\n"
               "  generate   generate text offline (--prompt, --temperature, --max-tokens, ...)\n"
               "  serve      OpenAI-compatible HTTP server (--host, --port, --api-key, ...)\n"
               "  chat       interactive chat in the terminal (--system-prompt, /reset, /exit)\n"
               "  render     print the prompt a chat template makes of messages (--messages FILE)\n"
               "  tokenize   print the token ids of a text (--model, --text)\n"
               "  bench      benchmarks: `cvllm bench latency|throughput|serve` (--input-len, ...)\n\n"
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
    if (command == "serve") return cvllm::cli::run_serve(argc, argv);
    if (command == "chat") return cvllm::cli::run_chat(argc, argv);
    if (command == "render") return cvllm::cli::run_render(argc, argv);
    if (command == "bench" && argc >= 3 && !std::strcmp(argv[2], "serve")) {
      return cvllm::cli::run_bench_serve(argc, argv);
    }
    if (command == "bench") return cvllm::cli::run_bench(argc, argv);
  } catch (const cvllm::cli::HelpRequested& e) {
    std::fputs(e.what(), stdout);
    return 0;
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
