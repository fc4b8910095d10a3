#include "engine/engine_core.h"

namespace cvllm {

EngineCore::EngineCore(std::unique_ptr<Scheduler> scheduler, std::unique_ptr<ModelRunner> runner)
    : scheduler_(std::move(scheduler)), runner_(std::move(runner)) {}

void EngineCore::add_request(std::shared_ptr<Request> request) {
  scheduler_->add_request(std::move(request));
}

void EngineCore::abort_requests(const std::vector<std::string>& request_ids, RequestStatus status) {
  scheduler_->finish_requests(request_ids, status);
}

std::vector<EngineCoreOutput> EngineCore::step() {
  SchedulerOutput scheduled = scheduler_->schedule();
  ModelRunnerOutput output = runner_->execute(scheduled);
  ++num_steps_;
  return scheduler_->update_from_output(scheduled, output);
}

}  // namespace cvllm
