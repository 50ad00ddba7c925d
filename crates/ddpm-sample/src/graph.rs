//! The sampler's network call through a captured graph (`--cuda-graph`): one launch per step
//! instead of hundreds of kernel launches, for a fixed batch shape.
//!
//! A captured CUDA graph replays the kernels it recorded on the memory it recorded them on.
//! So every input of the captured call — x_t, the time values t, and the class labels y — is a
//! static buffer that each call copies its values into, and the captured function reads
//! nothing else that changes between calls (it is fixed once, for the whole job: never a
//! closure over one batch's tensors). The output is copied out, so samplers may keep it.
//!
//! [`GraphMode::Emulated`] runs the same code path without CUDA: the function is "captured" at
//! first use and "replayed" on the static buffers. CPU tests use it to check that every input
//! reaches the network through the buffers (new labels or noise per batch change the output
//! exactly as eager calls do).

use crate::error::{Result, SampleError};
use ddpm_nets::placement::Placed;
use ddpm_shim::CudaGraph;
use std::collections::HashMap;
use tch::Tensor;

/// The captured function: (x_t, t, y) -> network output.
pub type CapturedFn<'a> = Box<dyn Fn(&Tensor, &Tensor, Option<&Tensor>) -> Tensor + 'a>;

/// How the network call is replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphMode {
    /// A real CUDA graph (needs CUDA and a shim built with the CUDA headers).
    Cuda,
    /// The same buffers and capture rule without a graph: the function captured at first use is
    /// called again on the static buffers (for tests on machines without a GPU).
    Emulated,
}

struct Captured {
    graph: Option<CudaGraph>,
    x: Tensor,
    t: Tensor,
    y: Option<Tensor>,
    out: Tensor,
}

/// A network call with static input buffers and one captured graph per input shape.
pub struct GraphedModel<'a> {
    mode: GraphMode,
    f: CapturedFn<'a>,
    graphs: HashMap<Vec<i64>, Captured>,
}

impl std::fmt::Debug for GraphedModel<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphedModel")
            .field("mode", &self.mode)
            .field("shapes", &self.graphs.len())
            .finish()
    }
}

fn graph_err(e: impl std::fmt::Display) -> SampleError {
    SampleError::Arg(format!("--cuda-graph: {e}"))
}

impl<'a> GraphedModel<'a> {
    /// `f` is the whole job's network call; it must read its inputs only from its arguments.
    pub fn new(mode: GraphMode, f: CapturedFn<'a>) -> Result<Self> {
        if mode == GraphMode::Cuda {
            if !ddpm_shim::has_cuda_graphs() {
                return Err(graph_err("this build has no CUDA graph support (no CUDA headers)"));
            }
            if !tch::Cuda::is_available() {
                return Err(graph_err("needs a CUDA device"));
            }
        }
        Ok(Self { mode, f, graphs: HashMap::new() })
    }

    /// `f(x, t, y)` through the graph for x's shape (captured on first use).
    pub fn call(&mut self, x: &Tensor, t: &Tensor, y: Option<&Tensor>) -> Result<Tensor> {
        let _g = tch::no_grad_guard();
        let key = x.size();
        if !self.graphs.contains_key(&key) {
            let captured = self.capture(x, t, y)?;
            self.graphs.insert(key.clone(), captured);
        }
        let c = &self.graphs[&key];
        if c.y.is_some() != y.is_some() {
            return Err(graph_err("class labels present in some batches and not in others"));
        }
        c.x.shallow_clone().copy_(x);
        c.t.shallow_clone().copy_(t);
        if let (Some(sy), Some(y)) = (&c.y, y) {
            sy.shallow_clone().copy_(y);
        }
        match &c.graph {
            Some(g) => g.replay().map_err(graph_err)?,
            None => {
                c.out.shallow_clone().copy_(&(self.f)(&c.x, &c.t, c.y.as_ref()));
            }
        }
        Ok(c.out.copy())
    }

    fn capture(&self, x: &Tensor, t: &Tensor, y: Option<&Tensor>) -> Result<Captured> {
        let (sx, st, sy) = (x.copy(), t.copy(), y.map(Tensor::copy));
        if self.mode == GraphMode::Emulated {
            let out = (self.f)(&sx, &st, sy.as_ref());
            return Ok(Captured { graph: None, x: sx, t: st, y: sy, out });
        }
        // Warm-up calls outside the graph (cuDNN autotuning, lazy allocations), then capture.
        for _ in 0..3 {
            let _ = (self.f)(&sx, &st, sy.as_ref());
        }
        if let tch::Device::Cuda(i) = x.device() {
            tch::Cuda::synchronize(i as i64);
        }
        let mut graph = CudaGraph::new().map_err(graph_err)?;
        let out = graph.capture(|| (self.f)(&sx, &st, sy.as_ref())).map_err(graph_err)?;
        Ok(Captured { graph: Some(graph), x: sx, t: st, y: sy, out })
    }
}

impl Placed for GraphedModel<'_> {
    fn placed_tensors(&self) -> Vec<(String, &Tensor)> {
        let mut v = Vec::new();
        for (shape, c) in &self.graphs {
            v.push((format!("{shape:?}/x"), &c.x));
            v.push((format!("{shape:?}/t"), &c.t));
            if let Some(y) = &c.y {
                v.push((format!("{shape:?}/y"), y));
            }
            v.push((format!("{shape:?}/out"), &c.out));
        }
        v
    }
}
