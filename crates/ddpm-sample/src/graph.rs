//! The sampler's network call replayed from a captured CUDA graph (`--cuda-graph`): one launch
//! per step instead of hundreds of kernel launches, for a fixed batch shape. A graph is
//! captured per input shape on first use (after eager warm-up calls); inputs are copied into
//! static tensors and the output is copied out, so samplers may keep what they get.
//!
//! Needs CUDA and a shim built with the CUDA headers (see `ddpm_shim::has_cuda_graphs`).

use crate::error::{Result, SampleError};
use ddpm_shim::CudaGraph;
use std::collections::HashMap;
use tch::Tensor;

#[derive(Debug)]
struct Captured {
    graph: CudaGraph,
    x: Tensor,
    t: Tensor,
    out: Tensor,
}

/// A network call with captured graphs by input shape.
#[derive(Debug, Default)]
pub struct GraphedModel {
    graphs: HashMap<Vec<i64>, Captured>,
}

impl GraphedModel {
    pub fn new() -> Result<Self> {
        if !ddpm_shim::has_cuda_graphs() {
            return Err(SampleError::Arg(
                "--cuda-graph: this build has no CUDA graph support (no CUDA headers)".into(),
            ));
        }
        if !tch::Cuda::is_available() {
            return Err(SampleError::Arg("--cuda-graph needs a CUDA device".into()));
        }
        Ok(Self::default())
    }

    /// `f(x, t)` through the graph for x's shape (captured on first use).
    pub fn call(
        &mut self,
        f: &dyn Fn(&Tensor, &Tensor) -> Tensor,
        x: &Tensor,
        t: &Tensor,
    ) -> Result<Tensor> {
        let key = x.size();
        if !self.graphs.contains_key(&key) {
            let _g = tch::no_grad_guard();
            let (sx, st) = (x.copy(), t.copy());
            for _ in 0..3 {
                let _ = f(&sx, &st);
            }
            if let tch::Device::Cuda(i) = x.device() {
                tch::Cuda::synchronize(i as i64);
            }
            let mut graph =
                CudaGraph::new().map_err(|e| SampleError::Arg(format!("--cuda-graph: {e}")))?;
            let out = graph
                .capture(|| f(&sx, &st))
                .map_err(|e| SampleError::Arg(format!("--cuda-graph: {e}")))?;
            self.graphs.insert(key.clone(), Captured { graph, x: sx, t: st, out });
        }
        let c = &self.graphs[&key];
        let _g = tch::no_grad_guard();
        c.x.shallow_clone().copy_(x);
        c.t.shallow_clone().copy_(t);
        c.graph.replay().map_err(|e| SampleError::Arg(format!("--cuda-graph: {e}")))?;
        Ok(c.out.copy())
    }
}
