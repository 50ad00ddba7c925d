// Stand-in for gloo/common/error.h (see ../../README.md): ProcessGroupGloo.hpp includes it but
// uses nothing from it in the header; gloo's exceptions are thrown and caught inside libtorch
// and reach us as std::exception (what dist.cpp catches).
#pragma once
