// Minimal parallel-for: workers pull task indices from an atomic counter. The first
// exception thrown by any task is rethrown on the calling thread after all workers join.
#pragma once
#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace wz {

inline int resolve_threads(int threads) {
  if (threads > 0) return threads;
  unsigned hc = std::thread::hardware_concurrency();
  return hc ? int(hc) : 1;
}

// f(task_index, worker_index)
template <class F>
void parallel_for(size_t ntasks, int threads, F f) {
  const int nw = int(std::min<size_t>(size_t(resolve_threads(threads)), ntasks));
  if (nw <= 1) {
    for (size_t i = 0; i < ntasks; ++i) f(i, 0);
    return;
  }
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr err;
  std::mutex mu;
  auto work = [&](int w) {
    for (;;) {
      size_t i = next.fetch_add(1);
      if (i >= ntasks || failed.load()) return;
      try {
        f(i, w);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (!err) err = std::current_exception();
        failed = true;
      }
    }
  };
  std::vector<std::thread> pool;
  for (int w = 1; w < nw; ++w) pool.emplace_back(work, w);
  work(0);
  for (auto& t : pool) t.join();
  if (err) std::rethrow_exception(err);
}

}  // namespace wz
