// `cvllm tokenize`: prints the token ids of a text on one line, space-separated. Works on
// vocabulary-only GGUF files, so it needs no weights.
//   cvllm tokenize --model M.gguf --text "Hello world" [--add-special-tokens]
#include <iostream>
#include <iterator>

#include "cli/commands.h"
#include "loader/gguf.h"
#include "loader/model_resolver.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace cvllm::cli {

int run_tokenize(int argc, char** argv) {
  Flags flags(argc, argv, 2, {"model", "text"}, {"add-special-tokens", "parse-special"});
  std::string model = flags.get("model").value_or(flags.positional().empty() ? "" : flags.positional()[0]);
  ResolvedModel resolved = resolve_model(model);
  if (resolved.format != ModelFormat::kGguf) {
    throw ValueError(cat(resolved.path, ": tokenize needs a .gguf file"));
  }
  std::shared_ptr<GgufFile> file = GgufFile::open(resolved.path);
  std::unique_ptr<Tokenizer> tokenizer = Tokenizer::from_gguf(*file);
  std::string text;
  if (auto t = flags.get("text")) {
    text = *t;
  } else {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  std::vector<int32_t> ids = tokenizer->encode(text, flags.get_bool("add-special-tokens"),
                                               flags.get_bool("parse-special", true));
  for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? " " : "") << ids[i];
  std::cout << std::endl;
  return 0;
}

}  // namespace cvllm::cli
