// Stand-in for gloo/rendezvous/store.h (see ../../README.md).
//
// ProcessGroupGloo::GlooStore (inline, in ProcessGroupGloo.hpp) derives from this interface and
// overrides set, get and the two waits, so those must be virtual here. libtorch builds its own
// GlooStore from the real header; dist.cpp never constructs one, so this class's layout is never
// used by our object code. GLOO_STORE_HAS_STORE_V2 stays undefined: the v2 overrides (multi_get,
// add, ...) are then compiled out of the inline GlooStore, which we do not use either.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace gloo {
namespace rendezvous {

class Store {
 public:
  virtual ~Store() = default;
  virtual void set(const std::string& key, const std::vector<char>& data) = 0;
  virtual std::vector<char> get(const std::string& key) = 0;
  virtual void wait(const std::vector<std::string>& keys) = 0;
  virtual void wait(
      const std::vector<std::string>& keys,
      const std::chrono::milliseconds& timeout) = 0;
};

} // namespace rendezvous
} // namespace gloo
