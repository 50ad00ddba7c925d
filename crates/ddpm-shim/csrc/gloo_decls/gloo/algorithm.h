// Stand-in for gloo/algorithm.h (see ../README.md): ProcessGroupGloo.hpp includes it but uses
// nothing from it in the header.
#pragma once
