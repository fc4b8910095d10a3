// EngineCore: the step loop. step() is three calls with plain data between them:
//   scheduler.schedule() -> runner.execute(scheduler_output) -> scheduler.update_from_output(...)
// Requests enter through add_request and leave when finished or aborted.
//
// With async scheduling (SchedulerConfig::async_scheduling) a step is launched before the last one
// is collected: schedule(N+1) and launch(N+1) run while the device computes step N, then N's
// output is collected and applied. The device goes from one step to the next without waiting for
// the host; a request that step N finishes may have computed one token too many in N+1, which is
// dropped.
#pragma once

#include <memory>
#include <optional>
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
  // Steps launched before the previous one's output was collected (async scheduling).
  int64_t num_steps_launched_ahead() const { return num_steps_launched_ahead_; }

 private:
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<ModelRunner> runner_;
  // Collects the step in flight once no request is left (it only computed tokens that are
  // dropped), so an idle engine holds nothing.
  void drain_if_idle();

  int64_t num_steps_ = 0;
  int64_t num_steps_launched_ahead_ = 0;
  std::optional<SchedulerOutput> in_flight_;  // launched, not collected (async scheduling)
};

}  // namespace cvllm
