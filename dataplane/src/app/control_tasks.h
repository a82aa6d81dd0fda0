// Work other threads hand to the control thread: the API server's calls run
// there, between control polls, so that only the control thread ever builds,
// publishes, reads or frees a generation of the tables.
//
// Threading: run() from any thread but the control thread; drain(), nap()
// and close() from the control thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>

namespace meshwire::dp {

class ControlTasks {
 public:
  // Runs fn on the control thread and waits until it has. False when the
  // node is stopping (fn did not run and will not).
  bool run(std::function<void()> fn) {
    auto task = std::make_shared<Task>();
    task->fn = std::move(fn);
    std::unique_lock<std::mutex> lock(mutex_);
    if (closed_) return false;
    queue_.push_back(task);
    posted_.notify_one();
    done_.wait(lock, [&] { return task->state != State::kQueued; });
    return task->state == State::kDone;
  }

  // Runs what is queued; returns how many ran.
  unsigned drain() {
    std::deque<std::shared_ptr<Task>> batch;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      batch.swap(queue_);
    }
    for (const auto& task : batch) {
      task->fn();
      std::lock_guard<std::mutex> lock(mutex_);
      task->state = State::kDone;
    }
    if (!batch.empty()) done_.notify_all();
    return static_cast<unsigned>(batch.size());
  }

  // The control thread's nap: returns after `most`, or as soon as a task is
  // queued (at once if one is), so that a call waits for no nap and does
  // not keep the thread polling fast after it.
  void nap(std::chrono::microseconds most) {
    std::unique_lock<std::mutex> lock(mutex_);
    posted_.wait_for(lock, most, [&] { return !queue_.empty() || closed_; });
  }

  // Refuses new work and fails what is queued (the node is stopping).
  void close() {
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
    for (const auto& task : queue_) task->state = State::kRefused;
    queue_.clear();
    done_.notify_all();
  }

 private:
  enum class State { kQueued, kDone, kRefused };
  struct Task {
    std::function<void()> fn;
    State state = State::kQueued;
  };
  std::mutex mutex_;
  std::condition_variable done_;
  std::condition_variable posted_;
  std::deque<std::shared_ptr<Task>> queue_;
  bool closed_ = false;
};

}  // namespace meshwire::dp
