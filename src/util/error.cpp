#include "util/error.h"

namespace cvllm {

void throw_check_failure(const char* file, int line, const char* cond, const std::string& message) {
  throw Error(cat(message, message.empty() ? "" : " ", "(check `", cond, "` failed at ", file, ":",
                  line, ")"));
}

}  // namespace cvllm
