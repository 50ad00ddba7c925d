// Stand-in for gloo/transport/device.h (see ../../README.md).
//
// ProcessGroupGloo.hpp names these types only through smart pointers: Options::devices is a
// vector of std::shared_ptr<Device> (made by createDeviceForHostname & co. inside libtorch) and
// SendWork/RecvWork hold std::unique_ptr<UnboundBuffer> (destroyed inside libtorch, where their
// vtables live). Forward declarations are enough.
#pragma once

namespace gloo {
namespace transport {

class Device;
class UnboundBuffer;

} // namespace transport
} // namespace gloo
