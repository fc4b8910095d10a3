// EngineCore: the step loop. step() is three calls with plain data between them:
//   scheduler.schedule() -> runner.execute(scheduler_output) -> scheduler.update_from_output(...)
// Requests enter through add_request and leave when finished or aborted.
#pragma once

#include <memory>
#include <vector>

#include "core/scheduler.h"
#include "runner/model_runner.h"

namespace cvllm {

class EngineCore {
 public:
  EngineCore(std::unique_ptr<Scheduler> scheduler, std::unique_ptr<ModelRunner> runner);

  void add_request(std::shared_ptr<Request> request);
  void abort_requests(const std::vector<std::string>& request_ids,
                      RequestStatus status = RequestStatus::kFinishedAborted);
  std::vector<EngineCoreOutput> step();
  bool has_unfinished_requests() const { return scheduler_->has_unfinished_requests(); }

  Scheduler& scheduler() { return *scheduler_; }
  ModelRunner& runner() { return *runner_; }
  int64_t num_steps() const { return num_steps_; }

 private:
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<ModelRunner> runner_;
  int64_t num_steps_ = 0;
};

}  // namespace cvllm
