#include "engine/engine_core.h"

namespace cvllm {

EngineCore::EngineCore(std::unique_ptr<Scheduler> scheduler, std::unique_ptr<ModelRunner> runner)
    : scheduler_(std::move(scheduler)), runner_(std::move(runner)) {}

void EngineCore::add_request(std::shared_ptr<Request> request) {
  scheduler_->add_request(std::move(request));
}

void EngineCore::abort_requests(const std::vector<std::string>& request_ids, RequestStatus status) {
  scheduler_->finish_requests(request_ids, status);
  drain_if_idle();
}

void EngineCore::drain_if_idle() {
  if (!in_flight_ || scheduler_->has_unfinished_requests()) return;
  SchedulerOutput done = std::move(*in_flight_);
  in_flight_.reset();
  ModelRunnerOutput output = runner_->collect();
  scheduler_->update_from_output(done, output);  // its requests are gone: nothing comes out
}

std::vector<EngineCoreOutput> EngineCore::step() {
  if (!scheduler_->config().async_scheduling) {
    SchedulerOutput scheduled = scheduler_->schedule();
    ModelRunnerOutput output = runner_->execute(scheduled);
    ++num_steps_;
    return scheduler_->update_from_output(scheduled, output);
  }
  // The runner holds exactly the steps in in_flight_ and `next`, also when a call throws.
  if (!in_flight_) {
    SchedulerOutput first = scheduler_->schedule();
    runner_->launch(first);
    in_flight_ = std::move(first);
  }
  // The next step, while this one still runs on the device (not after a step the runner finished
  // at launch: its output is ready, and would only wait).
  std::optional<SchedulerOutput> next;
  if (runner_->can_launch_ahead() && scheduler_->has_unfinished_requests()) {
    SchedulerOutput scheduled = scheduler_->schedule();
    runner_->launch(scheduled);
    next = std::move(scheduled);
    ++num_steps_launched_ahead_;
  }
  SchedulerOutput done = std::move(*in_flight_);
  in_flight_ = std::move(next);
  ModelRunnerOutput output = runner_->collect();
  ++num_steps_;
  std::vector<EngineCoreOutput> outputs = scheduler_->update_from_output(done, output);
  drain_if_idle();
  return outputs;
}

}  // namespace cvllm
