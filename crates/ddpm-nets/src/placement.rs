//! Where state lives. Every owner of device state (the optimiser's moments and step counters,
//! the EMA shadows, the diffusion's schedule arrays, a sampler's noise keys, the static inputs
//! of a captured CUDA graph) lists its tensors by name through [`Placed`]; [`check_placement`]
//! finds any that is not on the expected device (or, for parameters' state, not of the
//! expected dtype). A state tensor made on a constant device instead of its parameter's is the
//! bug this catches: on a CPU-only machine it hides, on a GPU it fails at the first kernel (or
//! costs a host-device copy per step).

use tch::{Device, Kind, Tensor};

/// A value that owns device state.
pub trait Placed {
    /// Every tensor of the state, by a name that says what it is.
    fn placed_tensors(&self) -> Vec<(String, &Tensor)>;
}

/// One tensor found in the wrong place.
#[derive(Debug, Clone, PartialEq)]
pub struct Misplaced {
    pub name: String,
    pub device: Device,
    pub kind: Kind,
}

/// Tensors of `state` not on `device` (and, when `kind` is given, not of that dtype). An empty
/// list means all is well.
pub fn misplaced(state: &dyn Placed, device: Device, kind: Option<Kind>) -> Vec<Misplaced> {
    state
        .placed_tensors()
        .into_iter()
        .filter(|(_, t)| t.device() != device || kind.is_some_and(|k| t.kind() != k))
        .map(|(name, t)| Misplaced { name, device: t.device(), kind: t.kind() })
        .collect()
}

/// `Err` naming the first few misplaced tensors of `state` (`what` names the owner).
pub fn check_placement(state: &dyn Placed, what: &str, device: Device) -> Result<(), String> {
    let bad = misplaced(state, device, None);
    if bad.is_empty() {
        return Ok(());
    }
    let names: Vec<String> =
        bad.iter().take(3).map(|m| format!("{} on {:?}", m.name, m.device)).collect();
    Err(format!(
        "{what}: {} of {} state tensors are not on {device:?}, e.g. {}",
        bad.len(),
        state.placed_tensors().len(),
        names.join(", ")
    ))
}

/// In debug builds, panics with [`check_placement`]'s message; free in release builds. Called
/// by the trainer and the sampler once their state is set up.
pub fn debug_check_placement(state: &dyn Placed, what: &str, device: Device) {
    if cfg!(debug_assertions)
        && let Err(e) = check_placement(state, what, device)
    {
        panic!("{e}");
    }
}

impl Placed for [Tensor] {
    fn placed_tensors(&self) -> Vec<(String, &Tensor)> {
        self.iter().enumerate().map(|(i, t)| (format!("[{i}]"), t)).collect()
    }
}

impl Placed for crate::Ema {
    fn placed_tensors(&self) -> Vec<(String, &Tensor)> {
        self.named_shadows().map(|(n, s)| (format!("ema/{n}"), s)).collect()
    }
}

impl Placed for ddpm_core::tensor::TensorDiffusion {
    fn placed_tensors(&self) -> Vec<(String, &Tensor)> {
        self.arrays().into_iter().map(|(n, t)| (format!("diffusion/{n}"), t)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Two(Tensor, Tensor);
    impl Placed for Two {
        fn placed_tensors(&self) -> Vec<(String, &Tensor)> {
            vec![("a".into(), &self.0), ("b".into(), &self.1)]
        }
    }

    #[test]
    fn finds_tensors_off_the_device_and_of_another_dtype() {
        let s = Two(
            Tensor::zeros([2], (Kind::Float, Device::Cpu)),
            Tensor::zeros([], (Kind::Int64, Device::Cpu)),
        );
        assert!(misplaced(&s, Device::Cpu, None).is_empty());
        assert_eq!(misplaced(&s, Device::Cpu, Some(Kind::Float)).len(), 1);
        let off = misplaced(&s, Device::Cuda(0), None);
        assert_eq!(off.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        let e = check_placement(&s, "two", Device::Cuda(0)).unwrap_err();
        assert_eq!(e, "two: 2 of 2 state tensors are not on Cuda(0), e.g. a on Cpu, b on Cpu");
    }
}
