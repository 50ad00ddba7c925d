// Stand-in for gloo/context.h (see ../README.md).
//
// ProcessGroupGloo.hpp holds gloo contexts as std::shared_ptr<gloo::Context> (created and
// destroyed by libtorch) and its inline setTimeout() calls context->setTimeout(timeout), so the
// class must be complete and declare that member. dist.cpp never calls it (it sets the timeout
// through ProcessGroupGloo::Options), so no definition is needed.
#pragma once

#include <chrono>

namespace gloo {

class Context {
 public:
  void setTimeout(std::chrono::milliseconds timeout);
};

} // namespace gloo
