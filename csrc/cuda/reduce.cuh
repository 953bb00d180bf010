// Block-wide sum used by the CUDA kernels (warp shuffles, then one shared slot per warp).
#pragma once

#include <cuda_runtime.h>

namespace frsengine {
namespace cuda {

constexpr int kThreads = 256;  // every kernel here is launched with this block size

// Sum of `v` over the block, returned to every thread. `shared` holds kThreads / 32 values.
template <typename acc_t>
__device__ acc_t block_sum(acc_t v, acc_t* shared) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kThreads / 32 ? shared[lane] : acc_t(0);
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    if (lane == 0) shared[0] = v;
  }
  __syncthreads();
  const acc_t total = shared[0];
  __syncthreads();  // the caller may reuse `shared` right away
  return total;
}

inline int blocks_for(int64_t n) {
  return static_cast<int>(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535));
}

}  // namespace cuda
}  // namespace frsengine
