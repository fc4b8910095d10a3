// Facts about the host the engine sizes itself from.
#pragma once

#include <cstdint>

namespace cvllm {

// MemAvailable from /proc/meminfo in bytes; 0 when unknown.
int64_t available_memory_bytes();
// Seconds on a monotonic clock.
double monotonic_seconds();
// Wall-clock seconds since the Unix epoch.
double wall_clock_seconds();

}  // namespace cvllm
